import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { buildResNet50 } from '../../../engine/model/resnet50.js';
import { layersNetwork } from '../../../engine/model/network.js';
import { summarize } from '../../../engine/model/summary.js';
import { activationFactor, trainStep, WASM_ACTIVATION_FACTOR, wasmMicroBatchSize } from '../../../engine/training/train-step.js';
import { maxAbsDifference, snapshotWeights, useTestBackend } from '../../helpers/tf.js';

describe('train step', () => {
  before(async () => {
    await useTestBackend();
  });

  it('takes the same step whether the batch runs whole or in micro-batches', () => {
    const images = tf.randomNormal<tf.Rank.R4>([5, 32, 32, 3], 0, 1, 'float32', 3);
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1], 'int32'), 3) as tf.Tensor2D;
    const run = (microBatchSize: number) => {
      const resnet = buildResNet50({ mode: 'feature_extraction', numClasses: 3, inputSize: 32, seed: 8 });
      const result = trainStep(resnet.network, tf.train.sgd(0.5), images, labels, { microBatchSize, weightDecay: 0.01 });
      const weights = snapshotWeights(resnet.model);
      resnet.dispose();
      return { result, weights };
    };
    const whole = run(5);
    const sliced = run(2);
    assert.ok(Math.abs(whole.result.loss - sliced.result.loss) < 1e-5, `${whole.result.loss} vs ${sliced.result.loss}`);
    assert.equal(whole.result.correct, sliced.result.correct);
    const kernel = 'fc/kernel';
    assert.ok(maxAbsDifference(whole.weights.get(kernel)!, sliced.weights.get(kernel)!) < 1e-6);
    const untouched = buildResNet50({ mode: 'feature_extraction', numClasses: 3, inputSize: 32, seed: 8 });
    assert.ok(
      maxAbsDifference(snapshotWeights(untouched.model).get(kernel)!, whole.weights.get(kernel)!) > 1e-4,
      'the step moved the head',
    );
    untouched.dispose();
    tf.dispose([images, labels]);
  });

  it('returns the class-weighted mean of the label-smoothed cross-entropy, as it stood before the step', () => {
    const model = tf.sequential({
      layers: [tf.layers.dense({ units: 3, inputShape: [4], kernelInitializer: tf.initializers.randomNormal({ seed: 2 }) })],
    });
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', 5);
    const labels = [0, 2, 1, 2];
    const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 3) as tf.Tensor2D;
    const weights = [1, 4, 0.5, 2];
    const smoothing = 0.2;
    const logits = (model.predict(x) as tf.Tensor).arraySync() as number[][];
    // Computed here by hand: targets (1 - e) * onehot + e / K, loss -sum(q log softmax), weighted mean.
    const perSample = logits.map((row, i) => {
      const logSum = Math.log(row.reduce((sum, v) => sum + Math.exp(v), 0));
      return -row.reduce((sum, v, c) => sum + ((c === labels[i] ? 1 - smoothing : 0) + smoothing / 3) * (v - logSum), 0);
    });
    const expected = perSample.reduce((sum, loss, i) => sum + weights[i] * loss, 0) / weights.reduce((a, b) => a + b, 0);
    const { loss } = trainStep(layersNetwork(model), tf.train.sgd(0.1), x, y, {
      sampleWeights: weights,
      labelSmoothing: smoothing,
      microBatchSize: 3,
    });
    assert.ok(Math.abs(loss - expected) < 1e-5, `${loss} vs ${expected}`);
    const unweighted = perSample.reduce((a, b) => a + b, 0) / 4;
    assert.ok(Math.abs(expected - unweighted) > 1e-3, 'the weights matter for this batch');
    model.dispose();
    tf.dispose([x, y]);
  });

  it('sizes micro-batches so they fit the 4 GiB wasm heap, and the next size up would not', () => {
    const paramsBytes = 98_757_904;
    // The estimate the sizing rests on: four copies of the parameters, 256 MiB slack, the activations per image.
    for (const batchNormTrains of [false, true]) {
      const factor = activationFactor(batchNormTrains);
      const fits = (images: number, perImage: number) => 4 * paramsBytes + 256 * 1024 ** 2 + factor * perImage * images <= 4 * 1024 ** 3;
      for (const perImage of [177_829_928, 177_829_928 / 4, 3_640_000]) {
        const size = wasmMicroBatchSize(perImage, paramsBytes, batchNormTrains);
        assert.ok(fits(size, perImage) && !fits(size + 1, perImage), `${size} images of ${perImage} bytes`);
      }
      assert.equal(wasmMicroBatchSize(1e10, paramsBytes, batchNormTrains), 1, 'never below one image');
    }
  });

  for (const freezeBatchNorm of [true, false]) {
    const factor = freezeBatchNorm ? WASM_ACTIVATION_FACTOR.tapeFree : WASM_ACTIVATION_FACTOR.batchStatistics;
    it(`holds at most ${factor}x torchinfo's estimate of tensor bytes per image in a fine-tuning step (freezeBatchNorm ${freezeBatchNorm})`, async () => {
      const config = { trainableFrom: 'conv1', freezeBatchNorm } as const;
      const resnet = buildResNet50({ mode: 'fine_tuning', numClasses: 3, inputSize: 64, fineTuning: config });
      const perImageEstimate = summarize(resnet, 0).totals.forwardBackwardPassBytes;
      const optimizer = tf.train.sgd(0.01);
      const peakOf = async (images: number) => {
        const x = tf.randomNormal<tf.Rank.R4>([images, 64, 64, 3]);
        const y = tf.oneHot(
          tf.tensor1d(
            Array.from({ length: images }, (_, i) => i % 3),
            'int32',
          ),
          3,
        ) as tf.Tensor2D;
        const { peakBytes } = await tf.profile(() => void trainStep(resnet.network, optimizer, x, y));
        tf.dispose([x, y]);
        return peakBytes;
      };
      // Optimiser state allocated before measuring. Batches large enough that the activations, not the weights' gradients
      // (which the tape-free pass makes as it frees activations), set the peak.
      await peakOf(8);
      const perImage = ((await peakOf(16)) - (await peakOf(8))) / 8;
      // torchinfo counts each BatchNorm's and ReLU's output too: the folded convolutions' outputs are ~a quarter of it.
      assert.ok(perImage > 0.15 * perImageEstimate, `${perImage} bytes per image: the measurement sees the activations`);
      assert.ok(perImage <= factor * perImageEstimate, `${perImage} bytes per image vs torchinfo's ${perImageEstimate}`);
      optimizer.dispose();
      resnet.dispose();
    });
  }
});
