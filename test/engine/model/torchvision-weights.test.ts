import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildResNet50 } from '../../../engine/model/resnet50.js';
import {
  parseSafetensors,
  serializeSafetensors,
  SafetensorsFormatError,
  toFloat32,
  type RawTensor,
} from '../../../engine/model/safetensors.js';
import {
  exportTorchvisionWeights,
  importTorchvisionWeights,
  torchvisionWeightChunks,
  WeightsMismatchError,
} from '../../../engine/model/torchvision-weights.js';
import { bitIdentical, snapshotWeights, useTestBackend } from '../../helpers/tf.js';

function halfBits(value: number): number {
  // Exact for the values used below (small integers and halves).
  const sign = value < 0 ? 0x8000 : 0;
  const v = Math.abs(value);
  if (v === 0) return sign;
  const exponent = Math.floor(Math.log2(v));
  const fraction = Math.round((v / 2 ** exponent - 1) * 1024);
  return sign | ((exponent + 15) << 10) | fraction;
}

describe('torchvision safetensors', () => {
  before(async () => {
    await useTestBackend();
  });

  it('decodes float16, bfloat16 and float64 to the same float32 values', () => {
    const values = [0, 1, -2, 0.5, 1.5, -1024, 3.25];
    const f16 = new Uint16Array(values.map(halfBits));
    const f32 = new Float32Array(values);
    const bf16 = new Uint16Array(new Uint32Array(f32.buffer).map((bits) => bits >>> 16));
    const f64 = new Float64Array(values);
    const raw = (dtype: RawTensor['dtype'], a: ArrayBufferView): RawTensor => ({
      dtype,
      shape: [values.length],
      bytes: new Uint8Array(a.buffer),
    });
    for (const t of [raw('F16', f16), raw('BF16', bf16), raw('F64', f64), raw('F32', f32)]) {
      assert.deepEqual(Array.from(toFloat32(t)), values, t.dtype);
    }
  });

  it('round-trips a model through export and import bit for bit', () => {
    const source = buildResNet50({ mode: 'feature_extraction', numClasses: 3, inputSize: 32, seed: 1 });
    const target = buildResNet50({ mode: 'feature_extraction', numClasses: 3, inputSize: 32, seed: 2 });
    const file = exportTorchvisionWeights(source);
    const names = [...parseSafetensors(file).keys()];
    assert.equal(names.length, 53 * 5 + 53 + 2, 'conv weights + BN (4 tensors + num_batches_tracked) + fc');
    assert.ok(names.includes('layer1.0.downsample.0.weight') && names.includes('layer4.2.bn3.running_var'));
    importTorchvisionWeights(target, file, { scope: 'all' });
    const [a, b] = [snapshotWeights(source.model), snapshotWeights(target.model)];
    for (const [name, value] of a) assert.ok(bitIdentical(value, b.get(name)!), name);
    source.dispose();
    target.dispose();
  });

  it('lists every missing, unexpected and mis-shaped tensor in one error', () => {
    const source = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: 32 });
    const tensors = parseSafetensors(exportTorchvisionWeights(source));
    tensors.delete('layer2.1.conv2.weight');
    tensors.delete('bn1.running_mean');
    tensors.set('layer9.0.conv1.weight', tensors.get('conv1.weight')!);
    const misshaped = tensors.get('layer1.0.conv1.weight')!;
    tensors.set('layer1.0.conv1.weight', { ...misshaped, shape: [32, 128, 1, 1] });
    const target = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: 32 });
    assert.throws(
      () => importTorchvisionWeights(target, serializeSafetensors(tensors), { scope: 'all' }),
      (error: unknown) => {
        assert.ok(error instanceof WeightsMismatchError);
        assert.deepEqual(error.missing.sort(), ['bn1.running_mean', 'layer2.1.conv2.weight']);
        assert.deepEqual(error.unexpected, ['layer9.0.conv1.weight']);
        assert.equal(error.misshaped.length, 1);
        assert.match(error.message, /layer1\.0\.conv1\.weight \[32,128,1,1\] \(expected \[64,64,1,1\]\)/);
        return true;
      },
    );
  });

  it('loads only the backbone of ImageNet weights under a new head', () => {
    const imagenet = exportTorchvisionWeights(buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: 32, seed: 5 }));
    const model = buildResNet50({ mode: 'feature_extraction', numClasses: 4, inputSize: 32 });
    assert.throws(() => importTorchvisionWeights(model, imagenet, { scope: 'all' }), /fc\.weight \[1000,2048\] \(expected \[4,2048\]\)/);
    importTorchvisionWeights(model, imagenet, { scope: 'backbone' });
    const loaded = model.model.getLayer('layer3.2.conv2').getWeights()[0].dataSync();
    const expected = toFloat32(parseSafetensors(imagenet).get('layer3.2.conv2.weight')!);
    // torch OIHW [o][i][h][w] -> tfjs HWIO [h][w][i][o]: spot-check one element.
    const [o, i, h, w] = [7, 11, 2, 1];
    assert.equal(loaded[((h * 3 + w) * 256 + i) * 256 + o], expected[((o * 256 + i) * 3 + h) * 3 + w]);
  });

  it('keeps and loads only the frozen layers of a model that trains from layer3', () => {
    const config = {
      mode: 'fine_tuning',
      numClasses: 3,
      inputSize: 32,
      fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
    } as const;
    const source = buildResNet50({ ...config, seed: 1 });
    const frozenFile = Buffer.concat(torchvisionWeightChunks(source, { frozen: true }));
    const names = [...parseSafetensors(frozenFile).keys()].filter((name) => !name.endsWith('num_batches_tracked'));
    assert.ok(names.includes('conv1.weight') && names.includes('layer2.3.bn3.running_var'));
    assert.ok(!names.some((name) => name.startsWith('fc.')));
    // The trainable stages' BatchNorms are frozen too: only their convolutions stay out.
    assert.ok(
      names.includes('layer3.0.bn1.weight') && !names.includes('layer3.0.conv1.weight') && !names.includes('layer4.2.conv3.weight'),
    );
    assert.ok(frozenFile.byteLength * 5 < exportTorchvisionWeights(source).byteLength);

    const target = buildResNet50({ ...config, seed: 2 });
    const trained = () => target.model.getLayer('layer4.2.conv3').getWeights()[0].dataSync();
    const before = trained();
    for (const file of [frozenFile, exportTorchvisionWeights(source)]) {
      importTorchvisionWeights(target, file, { scope: 'frozen' });
      const [a, b] = [snapshotWeights(source.model), snapshotWeights(target.model)];
      for (const layer of target.model.layers.filter((l) => !l.trainable)) {
        for (const { originalName } of layer.weights) assert.ok(bitIdentical(a.get(originalName)!, b.get(originalName)!), originalName);
      }
      assert.deepEqual(trained(), before, 'the layers that train are left as they were');
    }

    const tensors = parseSafetensors(frozenFile);
    tensors.delete('layer1.0.conv2.weight');
    assert.throws(
      () => importTorchvisionWeights(target, serializeSafetensors(tensors), { scope: 'frozen' }),
      (error: unknown) => error instanceof WeightsMismatchError && error.missing.join() === 'layer1.0.conv2.weight',
    );
    target.dispose();
    source.dispose();
  });

  it('refuses malformed files with a format error', () => {
    assert.throws(() => parseSafetensors(new Uint8Array(4)), SafetensorsFormatError);
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(10n ** 12n);
    assert.throws(() => parseSafetensors(huge), /header length/);
    const lying = serializeSafetensors(new Map([['x', { dtype: 'F32', shape: [4], bytes: new Uint8Array(16) }]]));
    assert.throws(() => parseSafetensors(lying.subarray(0, lying.length - 4)), /data offsets/);
  });
});
