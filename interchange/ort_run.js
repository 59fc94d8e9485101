// Runs an ONNX model in ONNX Runtime (the npm package onnxruntime-node, whose CPU library ships
// inside the package) on raw float32 input, for onnx_resnet_test's comparison with qlab.
//
// Usage: node ort_run.js MODEL.onnx INPUT.bin N C H W OUTPUT.bin
// INPUT.bin holds N*C*H*W little-endian float32 (NCHW); OUTPUT.bin receives the first output's
// float32 values. Full graph optimization (QDQ fusion into ORT's QLinear kernels: what a
// deployment gets), two threads. The module is found through NODE_PATH.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, n, c, h, w, output] = process.argv.slice(2);
  const dims = [n, c, h, w].map(Number);
  const bytes = fs.readFileSync(input);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  if (data.length !== dims.reduce((a, b) => a * b, 1)) {
    throw new Error(`${input}: ${data.length} floats, expected ${dims.join('x')}`);
  }
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: 2,
  });
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, dims)};
  const results = await session.run(feeds);
  const y = results[session.outputNames[0]].data;
  fs.writeFileSync(output, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  console.log(`${model}: ${session.outputNames[0]} ${results[session.outputNames[0]].dims}`);
}

main().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
