import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { BatchNorm2d } from '../../../engine/model/batch-norm.js';
import { buildResNet50 } from '../../../engine/model/resnet50.js';
import { loadOneDnn, type OneDnnAddon } from '../../../engine/native/onednn.js';
import { useConvolutionPrecision } from '../../../engine/native/kernels/register.js';
import { SCALED_CONV } from '../../../engine/native/kernels/conv2d.js';
import { nativeConvBackward } from '../../../engine/native/kernels/conv-backward.js';
import { heapViews, type WasmBackend } from '../../../engine/native/kernels/heap.js';
import { FusedAdamOptimizer } from '../../../engine/training/adam.js';
import { trainStep } from '../../../engine/training/train-step.js';
import { bitIdentical, maxAbsDifference } from '../../helpers/tf.js';
import { caseData, convResults, relativeError, resnetConvCases, torchConvResults, type ConvCase } from '../../helpers/conv-cases.js';

let shapes: ConvCase[] | undefined;
/** Shapes ResNet-50 has at 32 px, plus batch 1, odd sizes and asymmetric 'same' padding. */
function cases(): ConvCase[] {
  shapes ??= [
    ...resnetConvCases(32, 2),
    ...resnetConvCases(48, 1),
    { input: [3, 15, 13, 5], kernel: 3, stride: 2, padding: 'same', filters: 7 },
    { input: [1, 9, 9, 3], kernel: 7, stride: 2, padding: 'same', filters: 4 },
    { input: [2, 7, 11, 6], kernel: 1, stride: 2, padding: 'valid', filters: 9 },
  ];
  return shapes;
}

/**
 * On the active backend: fused conv (bias, ReLU), matmuls with every transpose, bias and ReLU, large
 * elementwise ops (same shape and per channel), and the pooling and ReLU gradients.
 */
function denseResults(seed: number): Float32Array[] {
  const outputs = tf.tidy(() => {
    const r = (shape: number[], s: number) => tf.randomNormal(shape, 0, 1, 'float32', seed + s);
    const x = r([2, 6, 6, 4], 1) as tf.Tensor4D;
    const filter = r([3, 3, 4, 5], 2) as tf.Tensor4D;
    const fused = tf.fused.conv2d({ x, filter, strides: 1, pad: 'same', bias: r([5], 3), activation: 'relu' });
    const a = r([5, 7], 4) as tf.Tensor2D;
    const b = r([7, 3], 5) as tf.Tensor2D;
    const outputs = [
      fused,
      tf.matMul(a, b),
      tf.matMul(tf.transpose(a), b, true, false),
      tf.matMul(a, tf.transpose(b), false, true),
      tf.matMul(r([4, 5, 7], 6), r([4, 7, 3], 7)),
      tf.fused.matMul({ a, b, bias: r([3], 8), activation: 'relu' }),
    ];
    const big = r([2, 16, 16, 32], 9);
    const other = r([2, 16, 16, 32], 10);
    const channel = r([32], 11);
    outputs.push(tf.mul(big, channel), tf.mul(channel, big), tf.add(big, other), tf.sub(big, other), tf.sub(big, channel));
    const pooled = r([2, 8, 8, 8], 12);
    const [poolGrad] = tf.grads((input) => tf.sum(tf.mul(tf.maxPool(input as tf.Tensor4D, 3, 2, 'valid'), pooled)))([
      r([2, 17, 17, 8], 13),
    ]);
    const [averageGrad] = tf.grads((input) => tf.sum(tf.mul(tf.avgPool(input as tf.Tensor4D, [3, 2], 2, 'valid'), pooled)))([
      r([2, 17, 17, 8], 14),
    ]);
    const [globalAverageGrad] = tf.grads((input) => tf.sum(tf.mul(tf.avgPool(input as tf.Tensor4D, 4, 1, 'valid'), channel)))([
      r([2, 4, 4, 32], 15),
    ]);
    const [reluGrad] = tf.grads((input) => tf.sum(tf.mul(tf.relu(input), other)))([big]);
    outputs.push(poolGrad, averageGrad, globalAverageGrad, reluGrad, ...batchNormResults(r));
    return outputs;
  });
  const values = outputs.map((t) => t.dataSync() as Float32Array);
  tf.dispose(outputs);
  return values;
}

/** A trainable BatchNorm on batch statistics: output, gradients of input, gamma and beta, and the moving statistics after. */
function batchNormResults(r: (shape: number[], s: number) => tf.Tensor): tf.Tensor[] {
  const bn = new BatchNorm2d({ name: 'bn' });
  bn.build([null, 5, 7, 6]);
  bn.setWeights([tf.add(r([6], 20), 1), r([6], 21), r([6], 22), tf.add(tf.abs(r([6], 23)), 0.5)]);
  const x = r([3, 5, 7, 6], 24);
  const weights = r([3, 5, 7, 6], 25);
  const variables = bn.trainableWeights.map((w) => w.read() as tf.Variable);
  const loss = (input: tf.Tensor) => tf.sum<tf.Scalar>(tf.mul(bn.apply(input, { training: true }) as tf.Tensor, weights));
  const y = bn.apply(x, { training: true }) as tf.Tensor;
  const [dx] = tf.grads((input) => loss(input))([x]);
  const { grads } = tf.variableGrads(() => loss(x), variables);
  const statistics = bn.buffers.map((w) => w.read().clone());
  const results = [y, dx, ...variables.map((v) => grads[v.name]), ...statistics].map((t) => t.clone());
  bn.weights.forEach((w) => w.dispose());
  return results;
}

/**
 * The scaled convolution (a folded BatchNorm's scale inside) against a multiply, then the convolution and its gradients;
 * two filters in turn with one scale, as a layer's filter changes between steps (nothing of the first may be reused).
 * Then with a residual summed before the ReLU (a bottleneck's end): its gradient is the ReLU's, output by the same call.
 */
function expectScaledConvolutionsToMatch(tolerance: number): void {
  cases().forEach((c, i) => {
    const relu = i % 2 === 0;
    const label = `${c.kernel}x${c.kernel}/${c.stride} ${c.padding} on [${c.input}] -> ${c.filters}${relu ? ' + ReLU' : ''}`;
    tf.tidy(() => {
      const d = caseData(c, i);
      const x = tf.tensor4d(d.x, c.input);
      const weights = tf.tensor4d(d.weights, d.outShape);
      const scale = tf.randomUniform<tf.Rank.R1>([c.filters], 0.2, 3, 'float32', 3000 + i);
      const bias = tf.randomNormal<tf.Rank.R1>([c.filters], 0, 1, 'float32', 4000 + i);
      const linear = (a: tf.Tensor, k: tf.Tensor) =>
        tf.add(tf.conv2d(a as tf.Tensor4D, tf.mul<tf.Tensor4D>(k, scale), c.stride, c.padding), bias);
      const composed = (a: tf.Tensor, k: tf.Tensor) => (relu ? tf.relu(linear(a, k)) : linear(a, k));
      const first = tf.tensor4d(d.filter, d.filterShape);
      const kernels = [first, tf.randomNormal<tf.Rank.R4>(d.filterShape, 0, 1, 'float32', 5000 + i)];
      const expectClose = (pairs: Record<string, tf.Tensor[]>, what: string) => {
        for (const [part, [ours, reference]] of Object.entries(pairs)) {
          const error = relativeError(ours.dataSync(), reference.dataSync());
          assert.ok(error <= tolerance, `${part} of ${label}, ${what}: ${error}`);
        }
      };
      kernels.forEach((kernel, k) => {
        const [dx, dKernel] = tf.grads((a, f) => tf.sum(tf.mul(composed(a, f), weights)))([x, kernel]);
        const attrs = { strides: c.stride, pad: c.padding, dataFormat: 'NHWC', dilations: 1, activation: relu ? 'relu' : 'linear' };
        const y = tf.engine().runKernel<tf.Tensor4D>(SCALED_CONV, { x, filter: kernel, bias, scale }, attrs);
        const backward = { ...attrs, dataFormat: 'NHWC' as const, relu, inputGradient: true, filterGradient: true };
        const gradients = nativeConvBackward({ dy: weights, y, x, filter: kernel, scale }, backward);
        assert.ok(gradients, 'the native backward kernel is registered');
        expectClose({ y: [y, composed(x, kernel)], dx: [gradients[0], dx], dFilter: [gradients[1], dKernel] }, `filter ${k}`);
      });
      const residual = tf.randomNormal<tf.Rank.R4>(d.outShape, 0, 1, 'float32', 6000 + i);
      const summed = (a: tf.Tensor, k: tf.Tensor, r: tf.Tensor) => tf.relu(tf.add(linear(a, k), r));
      const [dx, dKernel, dResidual] = tf.grads((a, f, r) => tf.sum(tf.mul(summed(a, f, r), weights)))([x, first, residual]);
      const attrs = { strides: c.stride, pad: c.padding, dataFormat: 'NHWC', dilations: 1, activation: 'relu' };
      const y = tf.engine().runKernel<tf.Tensor4D>(SCALED_CONV, { x, filter: first, bias, scale, residual }, attrs);
      const backward = {
        ...attrs,
        dataFormat: 'NHWC' as const,
        relu: true,
        outputGradient: true,
        inputGradient: true,
        filterGradient: true,
      };
      const gradients = nativeConvBackward({ dy: weights, y, x, filter: first, scale }, backward);
      assert.ok(gradients);
      const [dz, ...rest] = gradients;
      expectClose(
        { y: [y, summed(x, first, residual)], dResidual: [dz, dResidual], dx: [rest[0], dx], dFilter: [rest[1], dKernel] },
        'residual',
      );
      // A gradient of x handed in (`addend`) is added to the input gradient, in the addend's own data.
      const handed = tf.randomNormal<tf.Rank.R4>(c.input, 0, 1, 'float32', 7000 + i);
      const expected = tf.add(dx, handed);
      const withAddend = nativeConvBackward(
        { dy: weights, y, x, filter: first, scale, addend: handed },
        { ...backward, outputGradient: false },
      );
      assert.ok(withAddend);
      expectClose({ 'dx + addend': [withAddend[0], expected] }, 'addend');
      assert.equal(withAddend[0].dataId, handed.dataId, "written over the addend's data");
    });
  });
}

/** Runs test/helpers/verbose-convolutions-child.ts on `cases` in `precision` with oneDNN's verbose log on: its output, one "case N" line before each. */
function verboseConvolutions(cases: Array<{ size: number; strides: number; channels: number; kernel?: number }>, precision = 'fp32') {
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'test/helpers/verbose-convolutions-child.ts', JSON.stringify(cases), precision],
    {
      env: { ...process.env, ONEDNN_VERBOSE: '1' },
      encoding: 'utf8',
    },
  );
  assert.equal(child.status, 0, child.stderr);
  return child;
}

/** The primitives oneDNN's verbose log says ran. */
const executed = (log: string) => log.split('\n').filter((line) => line.startsWith('onednn_verbose,exec,'));
describe('oneDNN kernels for the wasm backend', () => {
  let addon: OneDnnAddon;
  before(() => {
    const loaded = loadOneDnn();
    if ('missing' in loaded) throw new Error(`the addon is ${loaded.missing}: ./scripts/test installs libdnnl-dev and builds it`);
    addon = loaded.addon;
  });

  it('equal PyTorch within 1e-4 on every ResNet-50 convolution, forward and both gradients, and the cpu backend on the rest', async () => {
    await selectBackend('cpu');
    const all = cases();
    const data = all.map((c, i) => caseData(c, i));
    const reference = torchConvResults(all, data);
    const dense = denseResults(40);
    const wasm = await selectBackend('wasm', { nativeKernels: true });
    assert.equal(wasm.kernels, `onednn ${addon.version()}`);
    const before = tf.memory().numTensors;
    const clock = addon.primitiveSeconds();
    const ours = all.map((c, i) => convResults(c, data[i]));
    assert.equal(tf.memory().numTensors, before);
    const inPrimitives = addon.primitiveSeconds();
    assert.ok(inPrimitives > clock, "the convolutions' time inside oneDNN is counted");
    addon.addRelu(new Float32Array(1024), new Float32Array(1024), new Float32Array(1024), 1024);
    assert.equal(addon.primitiveSeconds(), inPrimitives, 'our own loops are not');
    all.forEach((c, i) => {
      const label = `${c.kernel}x${c.kernel}/${c.stride} ${c.padding} on [${c.input}] -> ${c.filters}`;
      for (const part of ['y', 'dx', 'dFilter'] as const) {
        const error = relativeError(ours[i][part], reference[i][part]);
        assert.ok(error <= 1e-4, `${part} of ${label}: ${error}`);
      }
    });
    denseResults(40).forEach((values, i) => assert.ok(relativeError(values, dense[i]) <= 1e-5, `dense case ${i}`));
  });

  it('scale a filter per output channel as they use it, forward and both gradients, as a multiply before the convolution does', async () => {
    await selectBackend('wasm', { nativeKernels: true });
    expectScaledConvolutionsToMatch(1e-4);
  });

  it("keep a scaled filter's reorder once it is used again (an evaluation), and drop it for the layer's next filter", async () => {
    await selectBackend('wasm', { nativeKernels: true });
    // 3x3 at 8 channels: oneDNN wants a blocked filter, so the scaled copy is a reorder (one or two primitive runs).
    const x = tf.randomNormal<tf.Rank.R4>([2, 6, 6, 8], 0, 1, 'float32', 60);
    const scale = tf.randomUniform<tf.Rank.R1>([16], 0.2, 3, 'float32', 61);
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1, activation: 'linear' };
    const runs = (filter: tf.Tensor4D) => {
      const before = addon.primitiveRuns();
      const y = tf.engine().runKernel<tf.Tensor4D>(SCALED_CONV, { x, filter, scale }, attrs);
      const scaledRuns = addon.primitiveRuns() - before;
      const expected = tf.conv2d(x, tf.mul<tf.Tensor4D>(filter, scale), 1, 'same');
      const error = relativeError(y.dataSync(), expected.dataSync());
      tf.dispose([y, expected]);
      return { runs: scaledRuns, error };
    };
    const filters = [62, 63].map((seed) => tf.randomNormal<tf.Rank.R4>([3, 3, 8, 16], 0, 1, 'float32', seed));
    for (const filter of filters) {
      const [first, second, third] = [runs(filter), runs(filter), runs(filter)];
      for (const { error } of [first, second, third]) assert.ok(error <= 1e-4, `scaled convolution off by ${error}`);
      assert.ok(first.runs >= 2 && second.runs === first.runs, 'reordered on the first two uses');
      assert.equal(third.runs, 1, 'the third reads the kept reorder: the convolution alone');
    }
    // The second filter took the layer's slot (the same scale): the first one's reorder is gone.
    assert.ok(runs(filters[0]).runs >= 2, "the first filter's reorder was dropped");
    tf.dispose([x, scale, ...filters]);
  });

  it("transpose float32 tensors of any rank up to 6 by permuting their indices, small and int32 ones through wasm's own kernel", async () => {
    await selectBackend('wasm', { nativeKernels: true });
    /** out[i] for every output index, read from x at the index whose axis perm[k] is the output's k-th. */
    const expected = (values: Float32Array | Int32Array, shape: number[], perm: number[]) => {
      const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
      const outShape = perm.map((axis) => shape[axis]);
      return Array.from(values, (_, flat) => {
        let rest = flat;
        let source = 0;
        for (let k = outShape.length - 1; k >= 0; k--) {
          source += (rest % outShape[k]) * strides[perm[k]];
          rest = Math.floor(rest / outShape[k]);
        }
        return values[source];
      });
    };
    const cases: Array<[number[], number[]]> = [
      [
        [3, 3, 64, 128],
        [3, 2, 0, 1],
      ],
      [
        [128, 64, 3, 3],
        [2, 3, 1, 0],
      ],
      [
        [7, 5, 11, 13],
        [1, 3, 0, 2],
      ],
      [
        [2048, 10],
        [1, 0],
      ],
      [
        [2, 3, 4, 5, 6, 7],
        [5, 0, 4, 1, 3, 2],
      ],
      [
        [3, 4],
        [1, 0],
      ],
    ];
    const clock = addon.primitiveRuns();
    for (const [shape, perm] of cases) {
      const x = tf.randomNormal(shape, 0, 1, 'float32', shape.length);
      const out = tf.transpose(x, perm);
      assert.deepEqual(
        out.shape,
        perm.map((axis) => shape[axis]),
      );
      assert.deepEqual(Array.from(out.dataSync()), expected(x.dataSync() as Float32Array, shape, perm), `[${shape}] by [${perm}]`);
      tf.dispose([x, out]);
    }
    // Five of the six are large enough for the addon; [3, 4] stays with wasm's kernel.
    assert.equal(addon.primitiveRuns() - clock, 5);
    const ints = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32');
    assert.deepEqual(tf.transpose(ints).arraySync(), [
      [1, 4],
      [2, 5],
      [3, 6],
    ]);
    ints.dispose();
    assert.throws(
      () => addon.transpose(new Float32Array(6), new Float32Array(6), Int32Array.of(2, 3), Int32Array.of(0, 0)),
      /^Error: Transpose: perm is not a permutation/,
    );
    assert.throws(() => addon.transpose(new Float32Array(5), new Float32Array(6), Int32Array.of(2, 3), Int32Array.of(1, 0)), /x holds 5/);
  });

  it("route a max pooling's gradient through the argmaxes its forward pass kept, pooling again only when none were kept", async () => {
    const x = tf.randomNormal<tf.Rank.R4>([2, 17, 15, 8], 0, 1, 'float32', 50);
    const dy = tf.randomNormal<tf.Rank.R4>([2, 8, 7, 8], 0, 1, 'float32', 51);
    const attrs = { filterSize: 3, strides: 2, pad: 'valid' as const };
    const gradientOf = () => tf.grads((input) => tf.sum(tf.mul(tf.maxPool(input as tf.Tensor4D, 3, 2, 'valid'), dy)))([x])[0];
    await selectBackend('cpu');
    const reference = gradientOf().dataSync();
    const referencePooled = tf.maxPool(x, 3, 2, 'valid').dataSync();
    await selectBackend('wasm', { nativeKernels: true });
    const pooled = tf.maxPool(x, 3, 2, 'valid');
    assert.ok(bitIdentical(pooled.dataSync() as Float32Array, referencePooled as Float32Array), 'the pooled values');
    const runsOf = (run: () => tf.Tensor) => {
      const before = addon.primitiveRuns();
      const values = run().dataSync();
      return { values, runs: addon.primitiveRuns() - before };
    };
    // Recorded: the forward pooling in the tape, then the backward primitive alone (pooling again would make three).
    const taped = runsOf(gradientOf);
    assert.equal(taped.runs, 2, 'one forward pooling, one backward');
    // Called with an output pooled outside any gradient (nothing kept): it pools again first.
    const direct = runsOf(() => tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: pooled }, attrs));
    assert.equal(direct.runs, 2, 'the forward pooling again, then the backward');
    for (const values of [taped.values, direct.values]) assert.ok(relativeError(values, reference) <= 1e-6);
    tf.dispose([x, dy, pooled]);
  });

  it('answer bad shapes with a JavaScript error naming the kernel, not a crash', () => {
    const geometry = Int32Array.from([1, 4, 4, 2, 3, 3, 2, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1]);
    const small = new Float32Array(3);
    assert.throws(
      () => addon.conv2d(small, new Float32Array(36), null, new Float32Array(32), geometry, false, 0, null, 0, null),
      /^Error: Conv2D: x holds 3 values/,
    );
    assert.throws(
      () => addon.conv2d(new Float32Array(32), new Float32Array(36), null, new Float32Array(32), geometry, true, 0, null, 0, small),
      /^Error: Conv2D: residual holds 3 values/,
    );
    const wrongOut = Int32Array.from([1, 4, 4, 2, 3, 3, 2, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert.throws(
      () => addon.conv2dBackpropFilter(new Float32Array(32), new Float32Array(162), new Float32Array(36), wrongOut),
      /^Error: Conv2DBackpropFilter: output size/,
    );
    assert.throws(
      () => addon.matMul(new Float32Array(4), new Float32Array(4), null, new Float32Array(4), Int32Array.from([1, 2, 2]), false),
      /^Error: BatchMatMul: dims/,
    );
    assert.throws(() => addon.conv2dBackpropInput(small, small, small, new Int32Array(3), 0), /^Error: Conv2DBackpropInput: geometry/);
    const [dy, x, filter] = [new Float32Array(32), new Float32Array(32), new Float32Array(36)];
    assert.throws(
      () => addon.convBackward(dy, small, x, filter, null, filter, geometry, 0, null, 0, null, false, false),
      /^Error: RetrainConvBackward: y holds 3 values/,
    );
    assert.throws(
      () => addon.convBackward(dy, null, x, filter, null, filter, geometry, 0, null, 0, new Float32Array(32), false, false),
      /^Error: RetrainConvBackward: dz needs y/,
    );
    assert.throws(
      () => addon.convBackward(dy, new Float32Array(32), x, filter, null, filter, geometry, 0, null, 0, dy, false, false),
      /^Error: RetrainConvBackward: dz may be dy only when dy is writable/,
    );
    const four = () => new Float32Array(4);
    const scalars = new Float32Array(8);
    assert.throws(() => addon.adam([four()], [small], [four()], [four()], scalars, [null]), /^Error: Adam: gradient holds 3/);
    assert.throws(() => addon.adam([four()], [four()], [four()], [four()], scalars, []), /^Error: Adam: .* as long/);
    const heap = new Float32Array(8);
    assert.throws(
      () => addon.adam([heap.subarray(0, 4)], [four()], [heap.subarray(2, 6)], [four()], scalars, [null]),
      /^Error: Adam: .* overlap/,
    );
    const tapsPastTheFilter = Int32Array.from([1, 2, 2, 0, 1, 1, 2, 1]);
    assert.throws(
      () => addon.adam([four()], [four()], [four()], [four()], scalars, [tapsPastTheFilter]),
      /^Error: Adam: live taps do not fit/,
    );
  });

  it('drop the filter taps that read only padding (a 3x3 filter on a 1x1 input is its centre) from every primitive, their gradient zero', () => {
    // oneDNN's verbose log says what ran: a 3x3 filter on a 1x1 input runs as 1x1, at stride 2 on a 2x2 input ('same': padding
    // below and right) as 2x2, and on a 2x2 input at stride 1 whole.
    const child = verboseConvolutions([
      { size: 1, strides: 1, channels: 16 },
      { size: 2, strides: 2, channels: 16 },
      { size: 2, strides: 1, channels: 16 },
    ]);
    const logs = child.stdout.split(/^case \d+$/m).slice(1);
    const filterSizes = (log: string) => [...new Set(executed(log).flatMap((line) => line.match(/\b8x16x\dx\d\b/g) ?? []))];
    assert.ok(
      executed(logs[0]).some((line) => line.includes(',convolution,')),
      'the forward pass ran as a convolution',
    );
    assert.deepEqual(filterSizes(logs[0]), ['8x16x1x1'], executed(logs[0]).join('\n'));
    assert.ok(executed(logs[0]).every((line) => !/kh3|kw3/.test(line)));
    assert.deepEqual(filterSizes(logs[1]), ['8x16x2x2'], executed(logs[1]).join('\n'));
    assert.deepEqual(filterSizes(logs[2]), ['8x16x3x3'], 'every tap of a 3x3 filter on a 2x2 input at stride 1 reads pixels');
    const taps = JSON.parse(/^taps (.*)$/m.exec(child.stdout)?.[1] ?? 'null') as number[][];
    const live = taps.map((sums) => sums.map((sum) => (sum > 0 ? 1 : 0)).join(''));
    assert.deepEqual(live, ['000010000', '110110000', '111111111']);
  });

  it('compute the filter gradient of a convolution with few output pixels as one matrix product of its patches', () => {
    // 2 images of 2x2 pixels, 128 channels: dW [3*3*128, 8] = patches [8, 1152]^T dy [8, 8]; at 8x8 pixels oneDNN's own kernel.
    const child = verboseConvolutions([
      { size: 2, strides: 1, channels: 128 },
      { size: 8, strides: 1, channels: 128 },
    ]);
    const [small, large] = child.stdout
      .split(/^case \d+$/m)
      .slice(1)
      .map(executed);
    assert.ok(
      small.some((line) => line.includes(',matmul,') && line.includes(',1152x8:8x8:1152x8,')),
      small.join('\n'),
    );
    assert.ok(
      small.every((line) => !line.includes('backward_weights')),
      small.join('\n'),
    );
    assert.ok(
      large.some((line) => line.includes(',convolution,') && line.includes('backward_weights')),
      large.join('\n'),
    );
    const taps = JSON.parse(/^taps (.*)$/m.exec(child.stdout)?.[1] ?? 'null') as number[][];
    assert.ok(taps.every((sums) => sums.length === 9 && sums.every((sum) => sum > 0)));
  });

  it("read a filter's bfloat16 copy as it lies: narrowed once, read by a 1x1's input gradient, on few pixels by every filter's forward pass and input gradient", () => {
    const child = verboseConvolutions(
      [
        { size: 4, strides: 1, channels: 64, kernel: 1 },
        { size: 8, strides: 1, channels: 64, kernel: 1 },
        { size: 2, strides: 1, channels: 64, kernel: 3 },
      ],
      'bf16',
    );
    const [few, more, patches] = child.stdout
      .split(/^case \d+$/m)
      .slice(1)
      .map(executed);
    const all = [...few, ...more, ...patches];
    if (!/\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))) return assert.ok(all.every((line) => !line.includes('bf16')));
    const filterReorders = (lines: string[], kernel: number) =>
      lines.filter((line) => line.includes(',reorder,') && line.includes(`,8x64x${kernel}x${kernel},`));
    const forwardConvolution = (lines: string[]) =>
      lines.some((line) => line.includes(',convolution,') && line.includes('forward_training'));
    // 4x4 pixels: y = x W and dx = dy W^T are matmuls on the narrowed copy, its only reorder.
    assert.equal(filterReorders(few, 1).length, 1, filterReorders(few, 1).join('\n'));
    assert.match(filterReorders(few, 1)[0], /src_f32::blocked:cdba:f0 dst_bf16::blocked:cdba:f0,attr-oscale:1/);
    assert.ok(
      few.some((line) => line.includes(',matmul,') && line.includes('wei_bf16::blocked:ab:') && line.includes(',32x64:64x8:32x8,')),
      few.join('\n'),
    );
    assert.ok(!forwardConvolution(few), few.join('\n'));
    assert.ok(
      few.some((line) => line.includes(',matmul,') && line.includes('wei_bf16::blocked:ba:') && line.includes(',32x8:8x64:32x64,')),
      few.join('\n'),
    );
    // 8x8 pixels: a convolution, the copy re-laid out for it.
    assert.equal(filterReorders(more, 1).length, 2, filterReorders(more, 1).join('\n'));
    assert.ok(forwardConvolution(more), more.join('\n'));
    // A 3x3 filter on 2x2 pixels: the forward pass is the [8, 9 x 64] patches times the copy, the input gradient dy times
    // the copy read across (summed back into pixels); the copy is never re-laid out.
    assert.ok(
      patches.some((line) => line.includes(',matmul,') && line.includes('wei_bf16::blocked:ab:') && line.includes(',8x576:576x8:8x8,')),
      patches.join('\n'),
    );
    assert.ok(
      patches.some((line) => line.includes(',matmul,') && line.includes('wei_bf16::blocked:ba:') && line.includes(',8x8:8x576:8x576,')),
      patches.join('\n'),
    );
    assert.ok(!forwardConvolution(patches), patches.join('\n'));
    assert.ok(
      patches.every((line) => !line.includes('backward_data')),
      patches.join('\n'),
    );
    const intoBfloat16 = filterReorders(patches, 3).filter((line) => /dst_bf16/.test(line));
    assert.equal(intoBfloat16.length, 1, patches.join('\n'));
    assert.match(intoBfloat16[0], /src_f32::blocked:cdba:f0 dst_bf16::blocked:cdba:f0,attr-oscale:1/);
  });

  it('run convolutions in bfloat16 where the CPU has AVX512-BF16 (float32 elsewhere), within bfloat16 rounding', async () => {
    await selectBackend('wasm', { nativeKernels: true });
    const hasBf16 = /\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    const all = cases();
    const data = all.map((c, i) => caseData(c, i));
    const float32 = all.map((c, i) => convResults(c, data[i]));
    const applied = useConvolutionPrecision('bf16');
    try {
      assert.equal(applied, hasBf16 ? 'bf16' : 'fp32');
      const ours = all.map((c, i) => convResults(c, data[i]));
      let differing = 0;
      all.forEach((_case, i) => {
        for (const part of ['y', 'dx', 'dFilter'] as const) {
          const error = relativeError(ours[i][part], float32[i][part]);
          assert.ok(error <= 3e-2, `${part} of case ${i}: ${error}`);
          if (!bitIdentical(ours[i][part], float32[i][part])) differing++;
        }
      });
      // bfloat16 keeps 8 bits of mantissa: every result moves; in float32 none does.
      assert.equal(differing, hasBf16 ? all.length * 3 : 0);
      expectScaledConvolutionsToMatch(3e-2);
    } finally {
      useConvolutionPrecision('fp32');
    }
  });

  it("update with Adam in one pass to tfjs' Adam's bits, and continue from a saved state as if never stopped", async () => {
    await selectBackend('wasm', { nativeKernels: true });
    const variables = (tag: string) =>
      [[300, 400], [3, 3, 8, 16], [7]].map((shape, i) => tf.variable(tf.randomNormal(shape, 0, 1, 'float32', i + 1), true, `${tag}/${i}`));
    const gradientsFor = (vars: tf.Variable[], step: number) =>
      Object.fromEntries(vars.map((v, i) => [v.name, tf.randomNormal(v.shape, 0, 1, 'float32', 100 * step + i)]));
    const steps = (optimizer: tf.Optimizer, vars: tf.Variable[], numbers: number[]) => {
      for (const step of numbers) tf.tidy(() => optimizer.applyGradients(gradientsFor(vars, step)));
    };
    const fused = () => new FusedAdamOptimizer(1e-2, 0.9, 0.999, 1e-8);
    const stock = variables('stock');
    const uninterrupted = variables('uninterrupted');
    const resumed = variables('resumed');
    const theirs = tf.train.adam(1e-2, 0.9, 0.999, 1e-8);
    steps(theirs, stock, [1, 2, 3, 4, 5, 6, 7]);
    const ours = fused();
    steps(ours, uninterrupted, [1, 2, 3, 4, 5, 6, 7]);
    // Five steps (beta2^6 computed as a power differs from the product of the steps in its last bit),
    // the state saved, a new optimizer from it, two more steps.
    const first = fused();
    steps(first, resumed, [1, 2, 3, 4, 5]);
    const second = fused();
    await second.setWeights(await first.getWeights());
    steps(second, resumed, [6, 7]);
    stock.forEach((v, i) =>
      assert.ok(bitIdentical(v.dataSync() as Float32Array, uninterrupted[i].dataSync() as Float32Array), `variable ${i}`),
    );
    resumed.forEach((v, i) =>
      assert.ok(bitIdentical(v.dataSync() as Float32Array, uninterrupted[i].dataSync() as Float32Array), `resumed ${i}`),
    );
    const theirState = await theirs.getWeights();
    const ourState = await ours.getWeights();
    assert.deepEqual(
      ourState.slice(0, theirState.length).map((w) => w.name.replace('uninterrupted', 'stock')),
      theirState.map((w) => w.name),
      "tfjs' state first, then the beta powers",
    );
    theirState.forEach((w, i) =>
      assert.ok(bitIdentical(w.tensor.dataSync() as Float32Array, ourState[i].tensor.dataSync() as Float32Array), w.name),
    );
    assert.ok(maxAbsDifference(stock[0].dataSync(), tf.randomNormal([300, 400], 0, 1, 'float32', 1).dataSync()) > 1e-3, 'Adam moved it');
    for (const optimizer of [theirs, ours, first, second]) optimizer.dispose();
    tf.dispose([...stock, ...uninterrupted, ...resumed]);
  });

  it('update with Adam only the taps a convolution read pixels with, while the moments are zero at the others', async () => {
    await selectBackend('wasm', { nativeKernels: true });
    // A 3x3 filter on 1x1 inputs: only the centre tap reads pixels, the other 8 taps' gradient is 0.
    const shape: [number, number, number, number] = [3, 3, 8, 16];
    const x = tf.randomNormal<tf.Rank.R4>([2, 1, 1, 8], 0, 1, 'float32', 1);
    const dy = tf.randomNormal<tf.Rank.R4>([2, 1, 1, 16], 0, 1, 'float32', 2);
    const start = tf.randomNormal<tf.Rank.R4>(shape, 0, 1, 'float32', 3);
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', relu: false, inputGradient: false, filterGradient: true } as const;
    const deadTap = (i: number) => Math.floor(i / (8 * 16)) !== 4;
    const run = (optimizer: tf.Optimizer, filter: tf.Variable, poisoned: boolean) =>
      tf.tidy(() => {
        const [gradient] = nativeConvBackward({ dy, y: dy, x, filter: filter as tf.Tensor4D }, attrs) ?? [];
        // Values the kernel never wrote at the dead taps: were they read, the update would move those taps.
        if (poisoned) heapViews(tf.backend() as WasmBackend, [gradient])[0].forEach((_, i, view) => deadTap(i) && (view[i] = 1));
        optimizer.applyGradients({ [filter.name]: gradient });
      });
    const stockStep = (optimizer: tf.Optimizer, filter: tf.Variable) =>
      tf.tidy(() =>
        optimizer.applyGradients({
          [filter.name]: nativeConvBackward({ dy, y: dy, x, filter: filter as tf.Tensor4D }, attrs)?.[0] ?? tf.zeros(shape),
        }),
      );

    // Fresh moments: the first step checks they are zero at the dead taps, the second knows it.
    const theirs = tf.train.adam(1e-2, 0.9, 0.999, 1e-8);
    const ours = new FusedAdamOptimizer(1e-2, 0.9, 0.999, 1e-8);
    const [reference, filter] = ['stock', 'fused'].map((tag) => tf.variable(start.clone(), true, `live-taps/${tag}`));
    for (let step = 0; step < 2; step++) {
      stockStep(theirs, reference);
      run(ours, filter, true);
    }
    const values = filter.dataSync() as Float32Array;
    assert.ok(bitIdentical(values, reference.dataSync() as Float32Array), "tfjs' Adam's bits at every tap");
    assert.ok(
      values.every((value, i) => !deadTap(i) || value === start.dataSync()[i]),
      'the dead taps were left as they were',
    );
    assert.ok(maxAbsDifference(values, start.dataSync()) > 1e-3, 'the centre moved');

    // Moments not zero at the dead taps (a state from steps on another gradient): Adam updates every tap, as tfjs' does.
    const [stockMoved, fusedMoved] = ['stock-moved', 'fused-moved'].map((tag) => tf.variable(start.clone(), true, `live-taps/${tag}`));
    const movedTheirs = tf.train.adam(1e-2, 0.9, 0.999, 1e-8);
    const movedOurs = new FusedAdamOptimizer(1e-2, 0.9, 0.999, 1e-8);
    tf.tidy(() => movedTheirs.applyGradients([{ name: stockMoved.name, tensor: tf.randomNormal(shape, 0, 1, 'float32', 4) }]));
    tf.tidy(() => movedOurs.applyGradients([{ name: fusedMoved.name, tensor: tf.randomNormal(shape, 0, 1, 'float32', 4) }]));
    const before = fusedMoved.dataSync() as Float32Array;
    stockStep(movedTheirs, stockMoved);
    run(movedOurs, fusedMoved, false);
    const moved = fusedMoved.dataSync() as Float32Array;
    assert.ok(bitIdentical(moved, stockMoved.dataSync() as Float32Array), "tfjs' Adam's bits at every tap");
    assert.ok(
      moved.some((value, i) => deadTap(i) && value !== before[i]),
      'the dead taps moved on their moments',
    );
    for (const optimizer of [theirs, ours, movedTheirs, movedOurs]) optimizer.dispose();
    tf.dispose([x, dy, start, reference, filter, stockMoved, fusedMoved]);
  });

  it("update a variable's data in place with Adam under a new id, so the kernels' kept filters and the BatchNorm foldings are redone", async () => {
    await selectBackend('wasm', { nativeKernels: true });
    // Made in a tidy: the variable then holds its data alone, and Adam may write it in place.
    const filter = tf.tidy(() => tf.variable(tf.randomNormal<tf.Rank.R4>([3, 3, 8, 16], 0, 1, 'float32', 1), true, 'in-place/filter'));
    const x = tf.randomNormal<tf.Rank.R4>([2, 8, 8, 8], 0, 1, 'float32', 2);
    const convolve = (f: tf.Tensor4D) => tf.tidy(() => tf.conv2d(x, f, 1, 'same').dataSync() as Float32Array);
    const before = convolve(filter);
    convolve(filter); // the second use keeps the filter's reorder under its id
    const dataId = filter.dataId;
    const bn = new BatchNorm2d({ name: 'in-place/bn', epsilon: 1e-5 });
    bn.build([null, 4, 4, 16]);
    const bnIds = bn.stateIds();
    const optimizer: tf.Optimizer = new FusedAdamOptimizer(1e-2, 0.9, 0.999, 1e-8);
    const gamma = bn.trainableWeights[0].read() as tf.Variable;
    tf.tidy(() =>
      optimizer.applyGradients({
        [filter.name]: tf.randomNormal(filter.shape, 0, 1, 'float32', 3),
        [gamma.name]: tf.randomNormal(gamma.shape, 0, 1, 'float32', 4),
      }),
    );
    assert.equal(filter.dataId, dataId, 'written in place');
    const fresh = tf.tensor4d(filter.dataSync() as Float32Array, filter.shape);
    const after = convolve(filter);
    assert.ok(bitIdentical(after, convolve(fresh)), "the convolution used the kept reorder of the filter's old values");
    assert.ok(maxAbsDifference(after, before) > 1e-4, 'the step moved the output');
    assert.notDeepEqual(bn.stateIds(), bnIds, 'the trained gamma kept its id: its folding would not be redone');
    optimizer.dispose();
    tf.dispose([filter, x, fresh, ...bn.weights.map((weight) => weight.read())]);
  });

  it('leak neither tensors nor native memory over 50 training steps', async () => {
    await selectBackend('wasm', { nativeKernels: true });
    const resnet = buildResNet50({
      mode: 'fine_tuning',
      numClasses: 3,
      inputSize: 32,
      seed: 1,
      fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
    });
    const optimizer = new FusedAdamOptimizer(1e-3, 0.9, 0.999, 1e-8);
    const x = tf.randomNormal<tf.Rank.R4>([4, 32, 32, 3], 0, 1, 'float32', 7);
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0], 'int32'), 3) as tf.Tensor2D;
    const step = () => trainStep(resnet.network, optimizer, x, y);
    for (let i = 0; i < 10; i++) step();
    const tensors = tf.memory().numTensors;
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < 40; i++) step();
    assert.equal(tf.memory().numTensors, tensors);
    // New filters every step: were their reorders kept, 40 steps would hold 40 copies of layer3-4 (~90 MB each).
    const grownMiB = (process.memoryUsage().rss - rss) / 2 ** 20;
    assert.ok(grownMiB < 64, `RSS grew ${grownMiB.toFixed(0)} MiB over 40 steps`);
    resnet.dispose();
  });
});
