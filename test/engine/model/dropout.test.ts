import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { Dropout } from '../../../engine/model/dropout.js';
import { useTestBackend } from '../../helpers/tf.js';

describe('Dropout', () => {
  before(async () => {
    await useTestBackend();
  });

  const masks = (layer: Dropout, calls: number) => {
    const x = tf.ones([1, 256]);
    const out = Array.from({ length: calls }, () =>
      Array.from((layer.apply(x, { training: true }) as tf.Tensor).dataSync(), (v) => (v === 0 ? 0 : 1)),
    );
    x.dispose();
    return out;
  };

  it('draws a new mask at every training call, reproducibly from its seed', () => {
    const [a1, a2] = masks(new Dropout({ name: 'a', rate: 0.5, seed: 3 }), 2);
    const [b1, b2] = masks(new Dropout({ name: 'b', rate: 0.5, seed: 3 }), 2);
    assert.notDeepEqual(a1, a2, 'tfjs-layers would repeat the first mask');
    assert.deepEqual([a1, a2], [b1, b2]);
    const dropped = a1.filter((v) => v === 0).length;
    assert.ok(dropped > 80 && dropped < 176, `${dropped} of 256 dropped at rate 0.5`);
  });

  it("draws an epoch's masks whatever came before it, so a resumed run repeats an uninterrupted one", () => {
    const uninterrupted = new Dropout({ name: 'u', rate: 0.5, seed: 4 });
    uninterrupted.startEpoch(1);
    masks(uninterrupted, 3);
    uninterrupted.startEpoch(2);
    const resumed = new Dropout({ name: 'r', rate: 0.5, seed: 4 });
    resumed.startEpoch(2);
    assert.deepEqual(masks(resumed, 2), masks(uninterrupted, 2));
  });

  it('is the identity at inference', () => {
    const x = tf.randomNormal([2, 8]);
    const y = new Dropout({ name: 'c', rate: 0.5, seed: 1 }).apply(x) as tf.Tensor;
    assert.deepEqual(Array.from(y.dataSync()), Array.from(x.dataSync()));
  });
});
