// Runs in a fresh process: loads a checkpoint two ways and writes both predictions for one input.
import * as tf from '../../engine/tf.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { LocalArtifactStore } from '../../common/artifact-store.js';
import { BackendChoice } from '../../schemas/model.js';
import { selectBackend } from '../../engine/backend/backend.js';
import { loadModel, storeHandler } from '../../engine/model/checkpoint-io.js';

const [dir, inputFile, outFile, backend] = process.argv.slice(2);
await selectBackend(BackendChoice.parse(backend));
const store = new LocalArtifactStore(dir);
const rebuilt = await loadModel(store, '');
const plain = await tf.loadLayersModel(storeHandler(store, ''));
const bytes = readFileSync(inputFile);
const size = rebuilt.config.inputSize;
const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
const input = tf.tensor4d(values, [values.length / (size * size * 3), size, size, 3]);
const outputs = [rebuilt.model, plain].map((m) => (m.predict(input) as tf.Tensor).dataSync());
writeFileSync(outFile, Buffer.concat(outputs.map((o) => Buffer.from(o.buffer, o.byteOffset, o.byteLength))));
