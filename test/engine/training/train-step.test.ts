import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { buildResNet50 } from '../../../engine/model/resnet50.js';
import { trainStep, wasmMicroBatchSize } from '../../../engine/training/train-step.js';
import { maxAbsDifference, snapshotWeights, useTestBackend } from '../../helpers/tf.js';

describe('train step', () => {
  before(async () => {
    await useTestBackend();
  });

  it('takes the same step whether the batch runs whole or in micro-batches', () => {
    const images = tf.randomNormal([5, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1], 'int32'), 3) as tf.Tensor2D;
    const run = (microBatchSize: number) => {
      const resnet = buildResNet50({ mode: 'feature_extraction', numClasses: 3, inputSize: 32, seed: 8 });
      const result = trainStep(resnet.model, tf.train.sgd(0.5), images, labels, { microBatchSize, weightDecay: 0.01 });
      const weights = snapshotWeights(resnet.model);
      resnet.model.dispose();
      return { result, weights };
    };
    const whole = run(5);
    const sliced = run(2);
    assert.ok(Math.abs(whole.result.loss - sliced.result.loss) < 1e-5, `${whole.result.loss} vs ${sliced.result.loss}`);
    assert.equal(whole.result.correct, sliced.result.correct);
    const kernel = 'fc/kernel';
    assert.ok(maxAbsDifference(whole.weights.get(kernel)!, sliced.weights.get(kernel)!) < 1e-6);
    const untouched = buildResNet50({ mode: 'feature_extraction', numClasses: 3, inputSize: 32, seed: 8 });
    assert.ok(maxAbsDifference(snapshotWeights(untouched.model).get(kernel)!, whole.weights.get(kernel)!) > 1e-4, 'the step moved the head');
    untouched.model.dispose();
    tf.dispose([images, labels]);
  });

  it('sizes micro-batches for the 4 GiB wasm heap', () => {
    const paramsBytes = 98_757_904;
    assert.equal(wasmMicroBatchSize(177_829_928, paramsBytes), 3, 'ResNet-50 fine-tuning at 224 px');
    assert.ok(wasmMicroBatchSize(177_829_928 / 4, paramsBytes) >= 12, 'at 112 px');
    assert.equal(wasmMicroBatchSize(1e10, paramsBytes), 1, 'never below one image');
  });
});
