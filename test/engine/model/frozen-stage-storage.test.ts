import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import * as tf from '../../../engine/tf.js';
import { resolveDataset, ImageLoader } from '../../../engine/data/datasets.js';
import type { LabelledImage } from '../../../common/image-folder.js';
import { preprocessingFor } from '../../../engine/data/preprocess.js';
import { Dropout } from '../../../engine/model/dropout.js';
import { frozenStages } from '../../../engine/model/fused-backbone.js';
import { buildResNet50, type ResNet50 } from '../../../engine/model/resnet50.js';
import { bfloat16Of } from '../../../engine/model/tensor-values.js';
import { useConvolutionPrecision } from '../../../engine/native/kernels/register.js';
import { frozenStageOutputs } from '../../../workers/training/frozen-stages.js';
import type { BatchSource } from '../../../workers/training/evaluate.js';
import { useTestBackend } from '../../helpers/tf.js';
import { tempDir } from '../../helpers/torch.js';

const SIZE = 32;
const STAGE = 3; // layer3 trains
const bf16Here = /\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));

describe("the frozen stages' output kept as bfloat16", () => {
  const scratch = tempDir('frozen-storage');
  let resnet: ResNet50;
  let images: LabelledImage[];
  let asFloat32: Awaited<ReturnType<typeof frozenStageOutputs>>;
  let asBfloat16: typeof asFloat32;
  before(async () => {
    await useTestBackend('wasm');
    const precision = useConvolutionPrecision('bf16');
    const folder = await resolveDataset({ type: 'synthetic', numClasses: 2, imagesPerClass: 5, imageSize: SIZE, seed: 2 }, scratch);
    images = folder.images;
    resnet = buildResNet50({
      mode: 'fine_tuning',
      numClasses: 2,
      inputSize: SIZE,
      seed: 1,
      fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
    });
    const run = { frozen: frozenStages(resnet, STAGE, precision), loader: new ImageLoader(folder.root, preprocessingFor(SIZE)), images };
    const kept = (bfloat16: boolean) => frozenStageOutputs({ ...run, batchSize: 4, maxBytes: 1e9, bfloat16, onBatch: async () => {} });
    [asFloat32, asBfloat16] = [await kept(false), await kept(true)];
  });
  after(() => {
    resnet.dispose();
    useConvolutionPrecision('fp32');
    rmSync(scratch, { recursive: true, force: true });
  });

  const batch = () => images.slice(3, 9);
  const valuesOf = async (inputs: BatchSource) => {
    const tensor = await inputs(batch());
    const values = tensor.dataSync() as Float32Array;
    tensor.dispose();
    return values;
  };

  it('keeps each value rounded to the nearest bfloat16, in half the bytes', async () => {
    assert.deepEqual([asFloat32.use.storedAs, asBfloat16.use.storedAs], ['float32', 'bfloat16']);
    assert.equal(asBfloat16.use.bytes * 2, asFloat32.use.bytes);
    const wide = await valuesOf(asFloat32.inputs!);
    assert.ok(
      wide.some((value) => value !== 0),
      'the stages gave something',
    );
    const rounded = new Float32Array(Uint32Array.from(bfloat16Of(wide), (bits) => bits << 16).buffer);
    assert.deepEqual(await valuesOf(asBfloat16.inputs!), rounded);
  });

  it(
    'trains the stages after them in bf16 exactly as the float32 copy does: their loss and gradients bit for bit',
    { skip: !bf16Here && 'no AVX512-BF16 on this CPU' },
    async () => {
      useConvolutionPrecision('bf16');
      const network = resnet.networkFrom(STAGE);
      const labels = tf.oneHot(
        tf.tensor1d(
          batch().map((image) => image.label),
          'int32',
        ),
        2,
      );
      const dropouts = resnet.model.layers.filter((layer): layer is Dropout => layer instanceof Dropout);
      const gradientsOn = async (inputs: BatchSource) => {
        // The same dropout masks in both.
        for (const layer of dropouts) layer.startEpoch(1);
        const x = await inputs(batch());
        const { value, grads } = tf.variableGrads(() =>
          tf.losses.softmaxCrossEntropy<tf.Tensor, tf.Scalar>(labels, network.forward(x, true)),
        );
        const loss = value.dataSync()[0];
        const gradients = new Map(Object.entries(grads).map(([name, gradient]) => [name, gradient.dataSync() as Float32Array]));
        tf.dispose([x, value, grads]);
        return { loss, gradients };
      };
      const [fromFloat32, fromBfloat16] = [await gradientsOn(asFloat32.inputs!), await gradientsOn(asBfloat16.inputs!)];
      assert.equal(fromBfloat16.loss, fromFloat32.loss);
      assert.equal(fromFloat32.gradients.size, network.trainableWeights.length, 'every trainable weight has a gradient');
      // Named, not deepEqual'd: a diff of millions of values would not fit in memory.
      const differing = [...fromFloat32.gradients].flatMap(([name, values]) => {
        const other = fromBfloat16.gradients.get(name)!;
        const count = values.filter((value, k) => !Object.is(value, other[k])).length;
        return count ? [`${name}: ${count} of ${values.length} values`] : [];
      });
      assert.deepEqual(differing, []);
      labels.dispose();
    },
  );
});
