// ONNX Runtime's CPU inference on our own ONNX export of the same network: the runtime a user would
// pick for serving, as a peer in `npm run bench` (onnxruntime-node, a devDependency whose install script
// is denied: the CPU library ships in the package).
import os from 'node:os';
import type * as OnnxRuntime from 'onnxruntime-node';
import { exportOnnx } from '../engine/model/onnx-export.js';
import { buildResNet50 } from '../engine/model/resnet50.js';
import type { ModelMetadata } from '../schemas/artifacts.js';

export interface OnnxRuntimeRow {
  inputSize: number;
  measurement: 'inference';
  imagesPerSecond: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Images per second of a 1000-class ResNet-50 in ONNX Runtime, fp32, all graph optimisations, one thread per core. */
export async function onnxRuntimePeer(sizes: number[], batch: number): Promise<OnnxRuntimeRow[] | { unavailable: string }> {
  let ort: typeof OnnxRuntime;
  try {
    ort = await import('onnxruntime-node');
  } catch (error) {
    return { unavailable: `onnxruntime-node: ${(error as Error).message.split('\n')[0]}` };
  }
  const rows: OnnxRuntimeRow[] = [];
  for (const size of sizes) {
    const resnet = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: size });
    // Only what the export reads: the model's throughput does not depend on its labels.
    const metadata = { classNames: [], preprocessing: {}, mode: 'pretrained' } as unknown as ModelMetadata;
    const encoded = exportOnnx(resnet, metadata, 'bench', 'bench');
    resnet.dispose();
    const session = await ort.InferenceSession.create(Buffer.concat(encoded.parts), {
      intraOpNumThreads: os.cpus().length,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
    const pixels = Float32Array.from({ length: batch * 3 * size * size }, () => Math.random() * 2 - 1);
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', pixels, [batch, 3, size, size]) };
    const run = async () => {
      const started = performance.now();
      await session.run(feeds);
      return (performance.now() - started) / 1000;
    };
    await run();
    await run();
    const times: number[] = [];
    const began = performance.now();
    do times.push(await run());
    while (times.length < 7 && performance.now() - began < 60_000);
    await session.release();
    rows.push({ inputSize: size, measurement: 'inference', imagesPerSecond: batch / median(times) });
  }
  return rows;
}
