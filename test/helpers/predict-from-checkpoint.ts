// Runs in a fresh process: loads a checkpoint two ways and writes both predictions for one input.
import * as tf from '@tensorflow/tfjs';
import { readFileSync, writeFileSync } from 'node:fs';
import { selectBackend, type BackendChoice } from '../../workers/engine/backend.js';
import { fileSystemHandler, loadModel } from '../../workers/model/checkpoint-io.js';
import { LocalArtifactStore } from '../../services/artifacts/artifact-store.js';

const [dir, inputFile, outFile, backend] = process.argv.slice(2);
await selectBackend(backend as BackendChoice);
const rebuilt = await loadModel(new LocalArtifactStore(dir), '');
const plain = await tf.loadLayersModel(fileSystemHandler(dir));
const bytes = readFileSync(inputFile);
const size = rebuilt.config.inputSize;
const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
const input = tf.tensor4d(values, [values.length / (size * size * 3), size, size, 3]);
const outputs = [rebuilt.model, plain].map((m) => (m.predict(input) as tf.Tensor).dataSync());
writeFileSync(outFile, Buffer.concat(outputs.map((o) => Buffer.from(o.buffer, o.byteOffset, o.byteLength))));
