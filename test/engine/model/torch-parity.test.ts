import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '../../../engine/tf.js';
import { buildResNet50, type ModelConfig, type ResNet50 } from '../../../engine/model/resnet50.js';
import { exportTorchvisionWeights, importTorchvisionWeights } from '../../../engine/model/torchvision-weights.js';
import { Dropout } from '../../../engine/model/dropout.js';
import { parseSafetensors, toFloat32 } from '../../../engine/model/safetensors.js';
import { trainStep } from '../../../engine/training/train-step.js';
import { topIndices as topK } from '../../../engine/training/classification-report.js';
import { maxAbsDifference, useTestBackend } from '../../helpers/tf.js';
import { readFloat32, standInReference, tempDir, torchReference } from '../../helpers/torch.js';

const BATCH = 2;

/** Logits as jobs compute them (eager, BatchNorm folded), checked against the layers model's on the way. */
function logitsOf(resnet: ResNet50, nchw: Float32Array, size: number): Float32Array {
  return tf.tidy(() => {
    const input = tf.transpose(tf.tensor4d(nchw, [BATCH, 3, size, size]), [0, 2, 3, 1]);
    const eager = resnet.network.forward(input, false).dataSync() as Float32Array;
    const layers = (resnet.model.predict(input) as tf.Tensor).dataSync() as Float32Array;
    assert.ok(maxAbsDifference(eager, layers) < 1e-4, `eager vs layers model: ${maxAbsDifference(eager, layers)}`);
    return eager;
  });
}

const l2 = (values: Float32Array) => Math.sqrt(values.reduce((sum, v) => sum + v * v, 0));

function assertSameTop5(ours: Float32Array, theirs: Float32Array, classes: number) {
  for (let i = 0; i < BATCH; i++) {
    const row = (a: Float32Array) => a.subarray(i * classes, (i + 1) * classes);
    assert.deepEqual(topK(row(ours), 5), topK(row(theirs), 5), `top-5 of sample ${i}`);
  }
}

describe('parity with torchvision resnet50 (Debian python3-torch)', () => {
  let standIn: string;
  let dir: string;
  before(async () => {
    await useTestBackend();
    standIn = standInReference(['--seed', '7', '--sizes', '224', '112', '64']);
    dir = tempDir('parity');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // 112 has odd spatial sizes (7 -> 4 in layer4): PyTorch's padding arithmetic must match there too.
  for (const size of [224, 112, 64]) {
    it(`reproduces PyTorch's logits and top-5 at input ${size}`, () => {
      const resnet = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: size });
      importTorchvisionWeights(resnet, readFileSync(path.join(standIn, 'weights.safetensors')), { scope: 'all' });
      const ours = logitsOf(resnet, readFloat32(path.join(standIn, `input-${size}.f32`)), size);
      const theirs = readFloat32(path.join(standIn, `logits-${size}.f32`));
      const spread = Math.max(...theirs) - Math.min(...theirs);
      assert.ok(spread > 1, `reference logits must not be degenerate (spread ${spread})`);
      assert.ok(maxAbsDifference(ours, theirs) < 1e-3, `max |difference| ${maxAbsDifference(ours, theirs)}`);
      assertSameTop5(ours, theirs, 1000);
      resnet.dispose();
    });
  }

  const exportCases: Array<[string, ModelConfig, string[]]> = [
    ['pretrained', { mode: 'pretrained', numClasses: 1000, inputSize: 64 }, ['--head', 'linear']],
    [
      'feature_extraction',
      { mode: 'feature_extraction', numClasses: 7, inputSize: 64, seed: 3 },
      ['--head', 'linear', '--num-classes', '7'],
    ],
    [
      'fine_tuning',
      { mode: 'fine_tuning', numClasses: 5, inputSize: 64, seed: 4, fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true } },
      ['--head', 'fine_tuning', '--num-classes', '5'],
    ],
  ];
  for (const [name, config, headArgs] of exportCases) {
    it(`exports ${name} weights that torchvision loads with strict=True and reproduces our logits`, () => {
      const resnet = buildResNet50(config);
      importTorchvisionWeights(resnet, readFileSync(path.join(standIn, 'weights.safetensors')), {
        scope: config.mode === 'pretrained' ? 'all' : 'backbone',
      });
      const exported = path.join(dir, `export-${name}.safetensors`);
      writeFileSync(exported, exportTorchvisionWeights(resnet));
      const input = path.join(standIn, 'input-64.f32');
      const torchLogits = path.join(dir, `torch-logits-${name}.f32`);
      torchReference(['check', '--weights', exported, ...headArgs, '--input', input, '--size', '64', '--logits-out', torchLogits]);
      const ours = logitsOf(resnet, readFloat32(input), 64);
      const theirs = readFloat32(torchLogits);
      assert.ok(maxAbsDifference(ours, theirs) < 1e-3, `max |difference| ${maxAbsDifference(ours, theirs)}`);
      assertSameTop5(ours, theirs, config.numClasses);
      resnet.dispose();
    });
  }

  it('imports float16 safetensors', () => {
    const halfDir = standInReference(['--seed', '7', '--sizes', '64', '--float16']);
    const resnet = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: 64 });
    importTorchvisionWeights(resnet, readFileSync(path.join(halfDir, 'weights.safetensors')), { scope: 'all' });
    const ours = logitsOf(resnet, readFloat32(path.join(halfDir, 'input-64.f32')), 64);
    const theirs = readFloat32(path.join(halfDir, 'logits-64.f32'));
    assert.ok(maxAbsDifference(ours, theirs) < 1e-3, `max |difference| ${maxAbsDifference(ours, theirs)}`);
    resnet.dispose();
  });
  it("takes PyTorch's training step: the loss and the gradient of every trainable tensor, no other changed", () => {
    const stepDir = path.join(dir, 'step');
    mkdirSync(stepDir);
    torchReference(['step', '--weights', path.join(standIn, 'weights.safetensors'), '--out', stepDir, '--trainable-from', 'layer3']);
    const { loss, labels } = JSON.parse(readFileSync(path.join(stepDir, 'step.json'), 'utf8')) as { loss: number; labels: number[] };
    const resnet = buildResNet50({
      mode: 'fine_tuning',
      numClasses: 10,
      inputSize: 32,
      fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
    });
    const start = parseSafetensors(readFileSync(path.join(stepDir, 'start.safetensors')));
    importTorchvisionWeights(resnet, readFileSync(path.join(stepDir, 'start.safetensors')), { scope: 'all' });
    // PyTorch's side runs in eval mode: no dropout masks to match.
    for (const layer of resnet.model.layers) if (layer instanceof Dropout) (layer as { rate: number }).rate = 0;
    const x = tf.tidy(() => tf.transpose(tf.tensor4d(readFloat32(path.join(stepDir, 'x.f32')), [labels.length, 3, 32, 32]), [0, 2, 3, 1]));
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), 10) as tf.Tensor2D);
    const optimizer = tf.train.sgd(1);
    const ours = trainStep(resnet.network, optimizer, x, y);
    tf.dispose([x, y]);
    optimizer.dispose();
    assert.ok(Math.abs(ours.loss - loss) < 1e-5, `loss ${ours.loss}, PyTorch's ${loss}`);
    const after = parseSafetensors(readFileSync(path.join(stepDir, 'after.safetensors')));
    const stepped = parseSafetensors(exportTorchvisionWeights(resnet));
    const changed: string[] = [];
    for (const [name, before] of start) {
      const [was, theirs, mine] = [before, after.get(name), stepped.get(name)].map((t) => toFloat32(t ?? before));
      const gradient = (now: Float32Array) => was.map((v, i) => v - now[i]);
      const [expected, actual] = [gradient(theirs), gradient(mine)];
      const norm = l2(expected);
      if (norm === 0) {
        assert.equal(l2(actual), 0, `${name} is frozen in PyTorch's step`);
        continue;
      }
      changed.push(name);
      const error = l2(expected.map((v, i) => v - actual[i])) / norm;
      assert.ok(error < 1e-3, `${name}: gradient off by ${error} of its norm`);
    }
    // layer3's 6 blocks and layer4's 3 (3 convolutions each, a projection in the first), the head's 3 Linear layers.
    assert.equal(changed.length, 9 * 3 + 2 + 6, changed.join());
    resnet.dispose();
  });
});
