// Runs an ONNX model in ONNX Runtime (the npm package onnxruntime-node, whose CPU library ships
// inside the package) on raw float32 input, for onnx_resnet_test's comparison with qlab.
//
// Usage: node ort_run.js MODEL.onnx INPUT.bin N C H W OUTPUT.bin [BATCH [LEVEL]]
// INPUT.bin holds at least N*C*H*W little-endian float32 (NCHW), of which the first N images are
// run; OUTPUT.bin receives the first output's
// float32 values for all N images, in order. The images are run BATCH at a time (default: all
// N in one run; smaller batches bound ORT's activation memory on the whole test set). LEVEL is
// ORT's graph optimization level: 'all' by default (QDQ fusion into ORT's QLinear kernels: what a
// deployment gets), 'disabled' / 'basic' / 'extended', or 'no_qdq_fusion': every optimization
// except ORT's QDQ transforms (session option session.disable_quant_qdq), so each
// DequantizeLinear -> op -> QuantizeLinear runs as written, in float: the model's exact ONNX
// semantics at nearly full speed.
// With more than one graph output (a debug export), output i (i >= 1) also goes to
// OUTPUT.bin.<i>, each converted to float32. Two threads. The module is found through NODE_PATH.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, n, c, h, w, output, batchArg, level] = process.argv.slice(2);
  const dims = [n, c, h, w].map(Number);
  const perImage = dims[1] * dims[2] * dims[3];
  const batch = batchArg ? Number(batchArg) : dims[0];
  if (!(batch >= 1)) throw new Error(`bad batch ${batchArg}`);
  const bytes = fs.readFileSync(input);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  if (data.length < dims.reduce((a, b) => a * b, 1)) {
    throw new Error(`${input}: ${data.length} floats, fewer than ${dims.join('x')}`);
  }
  const noQdqFusion = level === 'no_qdq_fusion';
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: noQdqFusion ? 'all' : level || 'all',
    intraOpNumThreads: 2,
    extra: noQdqFusion ? {session: {disable_quant_qdq: '1'}} : {},
  });
  const chunks = session.outputNames.map(() => []);
  for (let first = 0; first < dims[0]; first += batch) {
    const count = Math.min(batch, dims[0] - first);
    const slice = data.subarray(first * perImage, (first + count) * perImage);
    const feeds = {
      [session.inputNames[0]]: new ort.Tensor('float32', slice, [count, dims[1], dims[2], dims[3]]),
    };
    const results = await session.run(feeds);
    session.outputNames.forEach((name, i) => {
      chunks[i].push(Float32Array.from(results[name].data, Number));
    });
  }
  session.outputNames.forEach((name, i) => {
    const buffers = chunks[i].map((y) => Buffer.from(y.buffer, y.byteOffset, y.byteLength));
    fs.writeFileSync(i === 0 ? output : `${output}.${i}`, Buffer.concat(buffers));
  });
  console.log(`${model}: ${session.outputNames[0]} ${dims[0]} images, batch ${batch}, ` +
              `optimization ${level || 'all'}`);
}

main().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
