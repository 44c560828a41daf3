import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classificationReport, scoreProbabilities, topIndices } from '../../../engine/training/classification-report.js';

describe('classification metrics', () => {
  it('computes per-class precision, recall, F1 and the confusion matrix', () => {
    // true:      a a a b b c
    // predicted: a a b b c c
    const report = classificationReport(['a', 'b', 'c'], [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]);
    assert.deepEqual(report.confusionMatrix.matrix, [
      [2, 1, 0],
      [0, 1, 1],
      [0, 0, 1],
    ]);
    const [a, b, c] = report.perClass;
    assert.deepEqual([a.precision, a.recall, a.support], [1, 2 / 3, 3]);
    assert.deepEqual([b.precision, b.recall], [0.5, 0.5]);
    assert.deepEqual([c.precision, c.recall, c.f1], [0.5, 1, 2 / 3]);
    assert.equal(a.f1, 0.8);
  });

  it('reports 0 instead of NaN for a class never predicted nor present', () => {
    const [, never] = classificationReport(['a', 'b'], [0, 0], [0, 0]).perClass;
    assert.deepEqual([never.precision, never.recall, never.f1, never.support], [0, 0, 0, 0]);
  });

  it('scores loss, top-1 and top-5 from probabilities', () => {
    const rows = [new Float32Array([0.7, 0.1, 0.05, 0.05, 0.05, 0.05]), new Float32Array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])];
    const scores = scoreProbabilities(rows, [0, 5]);
    assert.equal(scores.top1, 0.5);
    assert.equal(scores.top5, 0.5, 'class 5 is sixth in the second row');
    assert.ok(Math.abs(scores.loss - (-Math.log(0.7) - Math.log(0.05)) / 2) < 1e-6);
    assert.deepEqual(topIndices([0.1, 0.5, 0.2], 2), [1, 2]);
  });
});
