import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { FusedBackbone, fusedLogits, RangeObserver } from '../../../engine/model/fused-backbone.js';
import { buildResNet50, freeze } from '../../../engine/model/resnet50.js';
import { loadOneDnn, type Int8OpSpec, type Int8TensorSpec, type OneDnnAddon } from '../../../engine/native/onednn.js';
import { relativeError, resnetConvCases, type ConvCase } from '../../helpers/conv-cases.js';

let addon: OneDnnAddon;

interface Variant {
  signedInput: boolean;
  relu: boolean;
  /** u8 after a ReLU, s8 without; f32 for the network's last output. */
  output: Int8TensorSpec['type'];
  /** A residual added before the ReLU (a block's last convolution): the block's input (u8) or a downsample's output (s8). */
  residual: 'none' | 'u8' | 's8';
}

/** |ours - reference| / |reference|, in the L2 norm. */
const normError = (ours: tf.Tensor, reference: tf.Tensor) =>
  tf.tidy(() => tf.norm(tf.sub(ours, reference)).dataSync()[0] / tf.norm(reference).dataSync()[0]);

/** The largest error of int8 against float32 (tfjs, same seeded values) relative to the largest output. */
function int8Error(c: ConvCase, variant: Variant, seed: number): number {
  const [n, paddedH, paddedW, channels] = c.input;
  const pad = (c.kernel - 1) / 2;
  // The cases give stride-2 convolutions' input already padded (as the tfjs model pads it); the addon pads itself.
  const trim = c.padding === 'valid' ? 2 * pad : 0;
  const [h, w] = [paddedH - trim, paddedW - trim];
  return tf.tidy(() => {
    const raw = tf.randomNormal<tf.Rank.R4>([n, h, w, channels], 0, 1, 'float32', seed);
    const x = variant.signedInput ? raw : tf.relu(raw);
    const weights = (k: number, s: number) =>
      tf.randomNormal<tf.Rank.R4>([k, k, channels, c.filters], 0, 1 / Math.sqrt(k * k * channels), 'float32', s);
    const [filter, shortcutFilter] = [weights(c.kernel, seed + 1), weights(1, seed + 2)];
    const [bias, shortcutBias] = [
      tf.randomNormal([c.filters], 0, 0.1, 'float32', seed + 3),
      tf.randomNormal([c.filters], 0, 0.1, 'float32', seed + 4),
    ];
    const padded = tf.pad(x, [
      [0, 0],
      [pad, pad],
      [pad, pad],
      [0, 0],
    ]);
    const conv = tf.add(tf.conv2d(padded, filter, c.stride, 'valid'), bias);
    const shortcutRaw = tf.add(tf.conv2d(x, shortcutFilter, c.stride, 'valid'), shortcutBias);
    const shortcut = variant.residual === 'u8' ? tf.relu(shortcutRaw) : shortcutRaw;
    const summed = variant.residual === 'none' ? conv : tf.add(conv, shortcut);
    const expected = variant.relu ? tf.relu(summed) : summed;
    const magnitude = (t: tf.Tensor) => tf.max(tf.abs(t)).dataSync()[0];
    const tensor = (t: tf.Tensor, type: Int8TensorSpec['type'], count: number): Int8TensorSpec => ({
      type,
      scale: type === 'f32' ? 1 : magnitude(t) / (type === 's8' ? 127 : 255),
      channels: count,
    });
    const values = (t: tf.Tensor) => t.dataSync() as Float32Array;
    const tensors = [tensor(x, variant.signedInput ? 's8' : 'u8', channels), tensor(expected, variant.output, c.filters)];
    const ops: Int8OpSpec[] = [];
    const main = { kind: 'conv' as const, src: 0, dst: 1, kernel: c.kernel, stride: c.stride, pad, relu: variant.relu };
    if (variant.residual === 'none') ops.push({ ...main, filter: values(filter), bias: values(bias) });
    else {
      tensors.push(tensor(shortcut, variant.residual, c.filters));
      ops.push({
        kind: 'conv',
        src: 0,
        dst: 2,
        kernel: 1,
        stride: c.stride,
        pad: 0,
        relu: false,
        filter: values(shortcutFilter),
        bias: values(shortcutBias),
      });
      // The output is the last tensor: the shortcut (tensor 2) is made first and summed into tensor 1... so swap them.
      [tensors[1], tensors[2]] = [tensors[2], tensors[1]];
      ops[0] = { ...ops[0], dst: 1 };
      ops.push({ ...main, dst: 2, sum: 1, filter: values(filter), bias: values(bias) });
    }
    const network = addon.int8Network({ tensors, ops });
    const out = new Float32Array(expected.size);
    addon.int8Run(network, values(x), Int32Array.of(n, h, w, channels), out, false);
    return relativeError(out, expected.dataSync());
  });
}

describe('the int8 backbone (oneDNN int8 convolutions)', () => {
  before(async () => {
    const loaded = loadOneDnn();
    if ('missing' in loaded) throw new Error(`the addon is ${loaded.missing}: ./scripts/test installs libdnnl-dev and builds it`);
    addon = loaded.addon;
    await selectBackend('wasm', { nativeKernels: true });
  });

  it('runs every ResNet-50 convolution shape at 224 px within quantisation error of float32', () => {
    const cases = resnetConvCases(224, 1);
    assert.equal(cases.length >= 20, true, `${cases.length} shapes`);
    const worst = { error: 0, at: '' };
    cases.forEach((c, i) => {
      const variants: Variant[] = [
        { signedInput: c.input[3] === 3, relu: true, output: 'u8', residual: 'none' },
        { signedInput: false, relu: false, output: 's8', residual: 'none' },
        ...(c.kernel === 1
          ? (['u8', 's8'] as const).flatMap((residual) =>
              (['u8', 'f32'] as const).map((output) => ({ signedInput: false, relu: true, output, residual })),
            )
          : []),
      ];
      for (const variant of variants) {
        const error = int8Error(c, variant, 10 * i);
        const at = `${JSON.stringify(c)} ${JSON.stringify(variant)}`;
        assert.ok(error < 0.03, `${at}: ${error}`);
        if (error > worst.error) Object.assign(worst, { error, at });
      }
    });
    // The error is quantisation's, not nothing: a float path would be within 1e-5.
    assert.ok(worst.error > 1e-3, `largest error ${worst.error} at ${worst.at}`);
  });

  it('quantises a whole model from observed ranges: its codes near float32, predictions the same on most images', () => {
    const resnet = buildResNet50({ mode: 'fine_tuning', numClasses: 10, inputSize: 64, seed: 5 });
    freeze(resnet);
    const observer = new RangeObserver(resnet);
    const images = (seed: number) => tf.randomNormal<tf.Rank.R4>([16, 64, 64, 3], 0, 1, 'float32', seed);
    const calibration = images(1);
    observer.observe(calibration);
    const ranges = observer.result();
    // The input, 53 convolutions and 16 residual sums.
    assert.equal(Object.keys(ranges).length, 1 + 53 + 16);
    assert.ok(ranges['layer2.0.downsample.0'].min < 0, 'a downsample (no ReLU) goes negative');
    assert.equal(ranges['layer2.0.add'].min, 0, 'a block ends in a ReLU');
    const x = images(2);
    const fp32 = tf.tidy(() => resnet.features(x));
    const top1 = (t: tf.Tensor) => Array.from(tf.tidy(() => tf.argMax(t, 1).dataSync()));
    const expected = top1(tf.tidy(() => resnet.network.forward(x, false)));
    const codesError = (backbone: FusedBackbone) => {
      const codes = backbone.codes(x);
      const error = normError(codes, fp32);
      codes.dispose();
      return error;
    };
    const errors: Record<string, number> = {};
    for (const residual of ['int8', 'fp32'] as const) {
      const backbone = FusedBackbone.build(addon, resnet, ranges, residual);
      errors[residual] = codesError(backbone);
      const predicted = top1(fusedLogits(resnet, backbone, x));
      assert.ok(predicted.filter((v, i) => v === expected[i]).length >= 14, `${residual}: top-1 ${predicted} vs ${expected}`);
    }
    // Without the channel means, no bias correction: the rounded filters' systematic error stays.
    const uncorrected = Object.fromEntries(Object.entries(ranges).map(([name, range]) => [name, { ...range, mean: [] }]));
    errors.uncorrected = codesError(FusedBackbone.build(addon, resnet, uncorrected));
    assert.ok(errors.int8 < 0.05 && errors.int8 > 1e-4, JSON.stringify(errors));
    assert.ok(errors.fp32 < errors.int8 && errors.int8 < errors.uncorrected, JSON.stringify(errors));
    tf.dispose([calibration, x, fp32]);
    resnet.dispose();
  });

  it('runs a whole model in bf16: its codes within bf16 rounding of float32, predictions the same', () => {
    const resnet = buildResNet50({ mode: 'fine_tuning', numClasses: 10, inputSize: 64, seed: 5 });
    freeze(resnet);
    const x = tf.randomNormal<tf.Rank.R4>([16, 64, 64, 3], 0, 1, 'float32', 2);
    const fp32 = tf.tidy(() => resnet.features(x));
    const top1 = (t: tf.Tensor) => Array.from(tf.tidy(() => tf.argMax(t, 1).dataSync()));
    const expected = top1(tf.tidy(() => resnet.network.forward(x, false)));
    const errors: Record<string, number> = {};
    for (const residual of ['int8', 'fp32'] as const) {
      const backbone = FusedBackbone.float(addon, resnet, 'bf16', { residual });
      const codes = backbone.codes(x);
      errors[residual] = normError(codes, fp32);
      codes.dispose();
      assert.deepEqual(top1(fusedLogits(resnet, backbone, x)), expected, residual);
    }
    // bf16 keeps 8 bits of mantissa (~0.4% per rounding); a float32 residual stream rounds less often.
    assert.ok(errors.int8 < 0.03 && errors.fp32 > 1e-5, JSON.stringify(errors));
    assert.ok(errors.fp32 < errors.int8, JSON.stringify(errors));
    tf.dispose([x, fp32]);
    resnet.dispose();
  });

  it("runs a whole model in float32 with ReLUs and sums in the epilogues: the eager network's codes to float rounding", () => {
    const resnet = buildResNet50({ mode: 'fine_tuning', numClasses: 10, inputSize: 64, seed: 5 });
    freeze(resnet);
    const x = tf.randomNormal<tf.Rank.R4>([16, 64, 64, 3], 0, 1, 'float32', 2);
    const eager = tf.tidy(() => resnet.features(x));
    const backbone = FusedBackbone.float(addon, resnet, 'fp32');
    const codes = backbone.codes(x);
    const error = normError(codes, eager);
    // Only the order of float additions differs (bf16 above is ~1e-2 off).
    assert.ok(error < 1e-5, `relative error ${error}`);
    // A second batch size builds a second instance, which shares the first one's reordered filters.
    const three = tf.tidy(() => backbone.codes(tf.slice(x, 0, 3)));
    const firstThree = tf.tidy(() => tf.slice(codes, 0, 3));
    const batchError = tf.tidy(() => tf.max(tf.abs(tf.sub(three, firstThree))).dataSync()[0] / tf.max(tf.abs(firstThree)).dataSync()[0]);
    assert.ok(batchError < 1e-5, `3 images against the same 3 of 16: ${batchError}`);
    tf.dispose([three, firstThree]);
    const expected = tf.tidy(() => resnet.network.forward(x, false));
    const fused = fusedLogits(resnet, backbone, x);
    const logitsError = tf.tidy(() => tf.max(tf.abs(tf.sub(fused, expected))).dataSync()[0] / tf.max(tf.abs(expected)).dataSync()[0]);
    assert.ok(logitsError < 1e-5, `logits off by ${logitsError} of the largest`);
    tf.dispose([x, eager, codes, expected, fused]);
    resnet.dispose();
  });

  it("runs a fine-tuning job's frozen stages as one network: the eager stages' output to float (or bf16) rounding, at odd sizes too", () => {
    const resnet = buildResNet50({ mode: 'fine_tuning', numClasses: 10, inputSize: 64, seed: 5 });
    freeze(resnet);
    // The stem alone (stage 1) ends in its max pooling, which keeps its input's type: in bf16 that input is written as f32.
    for (const [precision, tolerance] of [
      ['fp32', 1e-5],
      ['bf16', 0.03],
    ] as const) {
      for (const [stage, size] of [
        [1, 64],
        [3, 50],
        [4, 33],
      ] as const) {
        const x = tf.randomNormal<tf.Rank.R4>([3, size, size, 3], 0, 1, 'float32', stage);
        const eager = tf.tidy(() => resnet.stagesBefore(x, stage));
        const fused = FusedBackbone.float(addon, resnet, precision, { stages: stage }).outputs(x);
        assert.deepEqual(fused.shape, eager.shape, `${precision} stage ${stage} at ${size} px`);
        const error = normError(fused, eager);
        assert.ok(error < tolerance, `${precision} stage ${stage} at ${size} px: relative error ${error}`);
        tf.dispose([x, eager, fused]);
      }
    }
    assert.throws(() => FusedBackbone.float(addon, resnet, 'fp32', { stages: 0 }), /stages 0 is not 1..5/);
    resnet.dispose();
  });

  it('refuses descriptions that do not fit, naming what', () => {
    const tensors: Int8TensorSpec[] = [
      { type: 's8', scale: 0.1, channels: 3 },
      { type: 'u8', scale: 0.1, channels: 4 },
    ];
    const conv = { kind: 'conv' as const, src: 0, dst: 1, kernel: 3, stride: 1, pad: 1, relu: true, bias: new Float32Array(4) };
    assert.throws(
      () => addon.int8Network({ tensors, ops: [{ ...conv, filter: new Float32Array(10) }] }),
      /filter holds 10 values, the shape needs 108/,
    );
    assert.throws(() => addon.int8Network({ tensors, ops: [{ ...conv, dst: 5, filter: new Float32Array(108) }] }), /out of range/);
    assert.throws(() => addon.int8Network({ tensors: [{ ...tensors[0], scale: 0 }, tensors[1]], ops: [] }), /bad scale/);
    assert.throws(
      () => addon.int8Network({ tensors: [{ ...tensors[0], type: 'f16' as 'f32' }, tensors[1]], ops: [] }),
      /tensor 0: bad type f16/,
    );
    assert.throws(() => addon.int8Network({ tensors: [{ ...tensors[0], type: 'bf16' }, tensors[1]], ops: [] }), /float tensor has scale 1/);
    assert.throws(() => addon.int8Network({ tensors: [{ ...tensors[0], type: 'f32' }, tensors[1]], ops: [] }), /float tensor has scale 1/);
    const f32In: Int8TensorSpec = { type: 'f32', scale: 1, channels: 3 };
    assert.throws(
      () => addon.int8Network({ tensors: [f32In, tensors[1]], ops: [{ ...conv, filter: new Float32Array(108) }] }),
      /an f32 convolution writes f32/,
    );
    const bf16In: Int8TensorSpec = { type: 'bf16', scale: 1, channels: 3 };
    assert.throws(
      () => addon.int8Network({ tensors: [bf16In, tensors[1]], ops: [{ ...conv, filter: new Float32Array(108) }] }),
      /a bf16 one bf16 or f32/,
    );
    const network = addon.int8Network({ tensors, ops: [{ ...conv, filter: new Float32Array(108) }] });
    assert.throws(
      () => addon.int8Run(network, new Float32Array(12), Int32Array.of(1, 2, 2, 3), new Float32Array(3), false),
      /out holds 3 values/,
    );
    assert.throws(() => addon.int8Run(network, new Float32Array(12), Int32Array.of(1, 2, 2, 4), new Float32Array(16), false), /dims/);
    assert.deepEqual(Array.from(addon.int8OutputShape(network, 2, 2)), [2, 2, 4]);
    assert.throws(() => addon.int8OutputShape(network, 0, 2), /height and width must be positive/);
  });
});
