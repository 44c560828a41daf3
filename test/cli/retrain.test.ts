import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const BIN = path.resolve(import.meta.dirname, '../../bin/retrain.mjs');
const retrain = (...args: string[]) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, TFJS_BACKEND: 'wasm' } });

describe('retrain CLI', () => {
  it('prints the summary as JSON', () => {
    const run = retrain('summary', '--mode', 'fine_tuning', '--num-classes', '5', '--depth', '2', '--json');
    assert.equal(run.status, 0, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.equal(summary.totals.totalParams, 24_689_733);
    assert.equal(summary.totals.nonTrainableParams, 53_120);
    assert.equal(summary.depth, 2);
    assert.equal(summary.rows.find((r: { name: string }) => r.name === 'layer4.0').params, 6_039_552);
  });

  it('prints the torchinfo-style table', () => {
    const run = retrain('summary', '--mode', 'pretrained', '--input-size', '224', '--depth', '1');
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /Layer \(type \(var_name\):depth-idx\)\s+Output Shape\s+Param #/);
    assert.match(run.stdout, /Total mult-adds \(G\): 4\.09/);
    assert.match(run.stdout, /Estimated Total Size \(MB\): 280\.66/);
  });

  it('rejects bad arguments with exit code 2 and names the option', () => {
    for (const [args, message] of [
      [['summary', '--mode', 'bogus'], /mode/],
      [['summary', '--mode', 'feature_extraction'], /--num-classes is required/],
      [['summary', '--mode', 'fine_tuning', '--num-classes', '5', '--input-size', '100'], /multiple of 16/],
      [['summary', '--mode', 'feature_extraction', '--num-classes', '5', '--trainable-from', 'layer4'], /fine_tuning only/],
      [['train'], /unknown command/],
    ] as const) {
      const run = retrain(...args);
      assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
    }
  });
});
