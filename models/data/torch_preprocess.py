"""torchvision 0.14 / PIL 9.4 reference for models/data/preprocess_conformance_test.

Reads a JSON list of jobs and writes, per job i, raw little-endian files into OUT_DIR:
  i.decoded  uint8 HWC RGB: PIL's Image.open(path).convert("RGB") (torchvision's loader)
  i.tensor   float32 CHW: the full torchvision transform of the job's kind
  i.crop     uint8 HWC (imagenet only): Resize(256) + CenterCrop(224) before ToTensor
  i.resize_<k> uint8 HWC: img.resize((w, h), BILINEAR) for each requested [h, w] size
Usage: torch_preprocess.py JOBS_JSON OUT_DIR
"""
import json
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def main():
    jobs = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    for i, job in enumerate(jobs):
        with open(job["path"], "rb") as f:
            img = Image.open(f).convert("RGB")
        np.asarray(img, dtype=np.uint8).tofile(f"{out}/{i}.decoded")
        if job["kind"] == "imagenet":
            cropped = crop(img)
            np.asarray(cropped, dtype=np.uint8).tofile(f"{out}/{i}.crop")
            tensor = normalize(cropped)
        else:
            tensor = normalize(img)
        tensor.numpy().astype("<f4").tofile(f"{out}/{i}.tensor")
        for k, (h, w) in enumerate(job.get("resizes", [])):
            resized = img.resize((w, h), Image.BILINEAR)
            np.asarray(resized, dtype=np.uint8).tofile(f"{out}/{i}.resize_{k}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
