import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { buildResNet50, type ModelConfig } from '../../../engine/model/resnet50.js';
import { summarize } from '../../../engine/model/summary.js';
import { trainStep } from '../../../engine/training/train-step.js';
import { useTestBackend } from '../../helpers/tf.js';

describe('tensor lifetime', () => {
  before(async () => {
    await useTestBackend();
  });

  it('returns tf.memory().numTensors to its start after building, running and disposing ten models', () => {
    const modes: ModelConfig[] = [
      { mode: 'pretrained', numClasses: 1000, inputSize: 32 },
      { mode: 'feature_extraction', numClasses: 3, inputSize: 32 },
      { mode: 'fine_tuning', numClasses: 3, inputSize: 32, fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: true } },
    ];
    const start = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) {
      const resnet = buildResNet50(modes[i % modes.length]);
      tf.tidy(() => {
        const images = tf.randomNormal<tf.Rank.R4>([2, 32, 32, 3]);
        resnet.network.forward(images, false).dataSync();
        resnet.features(images).dataSync();
        summarize(resnet, 3);
        if (resnet.config.mode !== 'pretrained') {
          const labels = tf.oneHot(tf.tensor1d([0, 1], 'int32'), 3) as tf.Tensor2D;
          const optimizer = tf.train.sgd(0.01);
          trainStep(resnet.network, optimizer, images, labels);
          optimizer.dispose();
        }
      });
      resnet.dispose();
    }
    assert.equal(tf.memory().numTensors, start);
  });
});
