import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { buildResNet50, type BuildOptions, type ModelConfig } from '../../../engine/model/resnet50.js';
import { truncatedNormal } from '../../../engine/model/truncated-normal.js';
import { bitIdentical, snapshotWeights, useTestBackend } from '../../helpers/tf.js';

function initialWeights(config: ModelConfig, options?: BuildOptions): Map<string, Float32Array> {
  const resnet = buildResNet50(config, options);
  const weights = snapshotWeights(resnet.model);
  resnet.dispose();
  return weights;
}

const initialised = (name: string) => /(kernel|bias)$/.test(name);

describe('initialisation', () => {
  before(async () => {
    await useTestBackend();
  });

  // seed 0 is the default: tfjs would draw a seedless initializer from Math.random.
  for (const seed of [0, 7]) {
    it(`gives every weight the same bits from seed ${seed}, build after build`, () => {
      const config: ModelConfig = { mode: 'fine_tuning', numClasses: 3, inputSize: 32, seed };
      const first = initialWeights(config);
      const second = initialWeights(config);
      const differing = [...first.keys()].filter((name) => !bitIdentical(first.get(name)!, second.get(name)!));
      assert.deepEqual(differing, []);
    });
  }

  it("draws tf.truncatedNormal's values bit for bit: odd lengths (a pair's second value dropped), a mean, a fractional seed", () => {
    for (const [shape, mean, stdDev, seed] of [
      [[3, 3, 17, 5], 0, 0.05, 11],
      [[1001], 0.5, 2, 3.25],
      [[1], 0, 1, 99],
    ] as const) {
      const ours = truncatedNormal([...shape], mean, stdDev, seed);
      const theirs = tf.truncatedNormal([...shape], mean, stdDev, 'float32', seed);
      assert.ok(bitIdentical(ours.dataSync() as Float32Array, theirs.dataSync() as Float32Array), `${shape} ${seed}`);
      tf.dispose([ours, theirs]);
    }
    assert.throws(() => truncatedNormal([4], 0, 1, 0), /seed 0/);
  });

  it('draws every backbone filter as the VarianceScaling initializer model.json names would, with its seed', () => {
    const resnet = buildResNet50({ mode: 'fine_tuning', numClasses: 3, inputSize: 32, seed: 7 });
    const convs = resnet.model.layers.filter((layer) => layer.getClassName() === 'Conv2D');
    assert.equal(convs.length, 53);
    for (const conv of convs) {
      const { kernelInitializer } = conv.getConfig() as { kernelInitializer: { className: string; config: { seed: number } } };
      assert.equal(kernelInitializer.className, 'VarianceScaling', conv.name);
      assert.deepEqual({ ...kernelInitializer.config, seed: 0 }, { scale: 2, mode: 'fanOut', distribution: 'normal', seed: 0 });
      const kernel = conv.getWeights()[0];
      const tfjsDraw = tf.initializers.varianceScaling(kernelInitializer.config).apply(kernel.shape);
      assert.ok(bitIdentical(kernel.dataSync() as Float32Array, tfjsDraw.dataSync() as Float32Array), conv.name);
      tfjsDraw.dispose();
    }
    resnet.dispose();
  });

  it('draws every kernel and bias anew for another seed', () => {
    const zero = initialWeights({ mode: 'fine_tuning', numClasses: 3, inputSize: 32, seed: 0 });
    const one = initialWeights({ mode: 'fine_tuning', numClasses: 3, inputSize: 32, seed: 1 });
    const names = [...zero.keys()].filter(initialised);
    assert.ok(names.length > 50, names.join());
    const same = names.filter((name) => bitIdentical(zero.get(name)!, one.get(name)!));
    assert.deepEqual(same, []);
  });

  it('leaves the backbone at zero for a caller that loads it, and draws the head as a seeded build does', () => {
    const config: ModelConfig = { mode: 'fine_tuning', numClasses: 3, inputSize: 32, seed: 7 };
    const drawn = initialWeights(config);
    const loadedLater = initialWeights(config, { randomBackbone: false });
    const kernels = [...drawn.keys()].filter(initialised);
    const backbone = kernels.filter((name) => !name.startsWith('fc'));
    const head = kernels.filter((name) => name.startsWith('fc'));
    assert.equal(backbone.length, 53, backbone.join());
    assert.ok(head.length > 0);
    assert.deepEqual(
      backbone.filter((name) => loadedLater.get(name)!.some((value) => value !== 0)),
      [],
    );
    assert.deepEqual(
      head.filter((name) => !bitIdentical(drawn.get(name)!, loadedLater.get(name)!)),
      [],
    );
  });
});
