import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { buildResNet50, type ModelConfig, type ResNet50 } from '../../../engine/model/resnet50.js';
import { trainStep } from '../../../engine/training/train-step.js';
import { bitIdentical, snapshotWeights, useTestBackend } from '../../helpers/tf.js';

const SIZE = 32;
const CLASSES = 3;

function batch() {
  const images = tf.randomNormal<tf.Rank.R4>([4, SIZE, SIZE, 3], 0, 1, 'float32', 11);
  const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), CLASSES) as tf.Tensor2D;
  return { images, labels };
}

const isStatistic = (name: string) => /moving_(mean|variance)$/.test(name);

/** Builds, snapshots, trains one step (by `train`), and returns which weights changed. */
function changedAfterStep(config: ModelConfig, train: (resnet: ResNet50) => void) {
  const resnet = buildResNet50(config);
  const before = snapshotWeights(resnet.model);
  train(resnet);
  const after = snapshotWeights(resnet.model);
  resnet.dispose();
  const changed = [...before.keys()].filter((name) => !bitIdentical(before.get(name)!, after.get(name)!));
  return { names: [...before.keys()], changed: new Set(changed) };
}

const adamStep = (resnet: ResNet50) => {
  const { images, labels } = batch();
  trainStep(resnet.network, tf.train.adam(0.01), images, labels);
  tf.dispose([images, labels]);
};

describe('freezing', () => {
  before(async () => {
    await useTestBackend();
  });

  it('feature_extraction: one step changes the head and nothing of the backbone, BN statistics included', () => {
    const { names, changed } = changedAfterStep({ mode: 'feature_extraction', numClasses: CLASSES, inputSize: SIZE }, adamStep);
    assert.deepEqual([...changed].sort(), ['fc/bias', 'fc/kernel']);
    assert.equal(names.filter(isStatistic).length, 53 * 2, 'two statistics for each of the 53 BatchNorm layers');
  });

  it('feature_extraction: model.fit() also leaves the backbone bit-identical', async () => {
    const { model } = buildResNet50({ mode: 'feature_extraction', numClasses: CLASSES, inputSize: SIZE });
    // The model outputs logits: softmax cross-entropy on them (Keras' categoricalCrossentropy wants probabilities).
    model.compile({
      optimizer: tf.train.sgd(0.1),
      loss: (labels: tf.Tensor, logits: tf.Tensor) => tf.losses.softmaxCrossEntropy(labels, logits),
    });
    const before = snapshotWeights(model);
    const { images, labels } = batch();
    await model.fit(images, labels, { epochs: 1, batchSize: 4, verbose: 0 });
    const after = snapshotWeights(model);
    const changed = [...before.keys()].filter((name) => !bitIdentical(before.get(name)!, after.get(name)!));
    assert.deepEqual(changed.sort(), ['fc/bias', 'fc/kernel']);
    tf.dispose([images, labels]);
    model.dispose();
  });

  it('fine_tuning from layer4: earlier stages bit-identical, layer4 and head change, no BN statistic moves', () => {
    const config: ModelConfig = {
      mode: 'fine_tuning',
      numClasses: CLASSES,
      inputSize: SIZE,
      fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: true },
    };
    const { names, changed } = changedAfterStep(config, adamStep);
    const stage = (name: string) => name.split(/[./]/)[0];
    for (const name of names) {
      const shouldChange = (stage(name) === 'layer4' && /\.conv\d|downsample\.0/.test(name)) || stage(name) === 'fc';
      assert.equal(changed.has(name), shouldChange, `${name} ${shouldChange ? 'should' : 'should not'} change`);
    }
    assert.ok([...changed].some((n) => n.startsWith('layer4.2.conv3')));
  });

  it('fine_tuning with freezeBatchNorm false trains every stage on wasm and moves BN statistics', () => {
    const config: ModelConfig = {
      mode: 'fine_tuning',
      numClasses: CLASSES,
      inputSize: SIZE,
      fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: false },
    };
    const { names, changed } = changedAfterStep(config, adamStep);
    assert.ok(changed.has('conv1/kernel'));
    assert.ok(changed.has('bn1/moving_mean') && changed.has('bn1/gamma'));
    assert.equal(changed.size, names.length, 'every weight and statistic moves when nothing is frozen');
  });
});
