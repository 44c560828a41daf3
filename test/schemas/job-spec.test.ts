import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fieldErrorsOf } from '../../common/errors.js';
import { JobSpec } from '../../schemas/job-spec.js';

const synthetic = { type: 'synthetic', numClasses: 3, imagesPerClass: 4, imageSize: 32 };
const valid = { mode: 'feature_extraction', weights: 'random', inputSize: 32, epochs: 1, dataset: synthetic };

/** [description, spec, the field path the error must name] */
const MALFORMED: Array<[string, unknown, string]> = [
  ['unknown mode', { ...valid, mode: 'transfer' }, 'mode'],
  ['missing mode', { dataset: synthetic }, 'mode'],
  ['mode of the wrong type', { ...valid, mode: 3 }, 'mode'],
  ['fineTuning on feature_extraction', { ...valid, fineTuning: { trainableFrom: 'layer4' } }, 'fineTuning'],
  ['epochs on pretrained', { mode: 'pretrained', dataset: synthetic, epochs: 2 }, 'epochs'],
  ['optimizer on pretrained', { mode: 'pretrained', optimizer: { type: 'adam' } }, 'optimizer'],
  ['unknown top-level field', { ...valid, learningRate: 0.1 }, 'learningRate'],
  ['negative epochs', { ...valid, epochs: -1 }, 'epochs'],
  ['zero epochs', { ...valid, epochs: 0 }, 'epochs'],
  ['fractional epochs', { ...valid, epochs: 1.5 }, 'epochs'],
  ['epochs as a string', { ...valid, epochs: '3' }, 'epochs'],
  ['oversized epochs', { ...valid, epochs: 1e9 }, 'epochs'],
  ['oversized batchSize', { ...valid, batchSize: 100000 }, 'batchSize'],
  ['zero batchSize', { ...valid, batchSize: 0 }, 'batchSize'],
  ['inputSize not a multiple of 16', { ...valid, inputSize: 100 }, 'inputSize'],
  ['inputSize too large', { ...valid, inputSize: 4096 }, 'inputSize'],
  ['inputSize too small', { ...valid, inputSize: 0 }, 'inputSize'],
  ['weights that name nothing', { ...valid, weights: 'COCO weights' }, 'weights'],
  ['a start job that is no id', { ...valid, weights: { job: 'last one' } }, 'weights.job'],
  ['validationSplit above 0.9', { ...valid, validationSplit: 1.5 }, 'validationSplit'],
  ['negative seed', { ...valid, seed: -4 }, 'seed'],
  ['negative learning rate', { ...valid, optimizer: { type: 'sgd', learningRate: -0.1 } }, 'optimizer.learningRate'],
  ['unknown optimizer', { ...valid, optimizer: { type: 'rmsprop' } }, 'optimizer.type'],
  ['unknown optimizer field', { ...valid, optimizer: { type: 'adam', beta9: 1 } }, 'optimizer.beta9'],
  ['missing dataset on a training mode', { mode: 'feature_extraction', weights: 'random' }, 'dataset'],
  ['unknown dataset type', { ...valid, dataset: { type: 'imagenet' } }, 'dataset.type'],
  ['dataset path escaping DATA_DIR', { ...valid, dataset: { type: 'folder', path: '../../etc' } }, 'dataset.path'],
  ['absolute dataset path', { ...valid, dataset: { type: 'folder', path: '/etc' } }, 'dataset.path'],
  ['dataset path with NUL', { ...valid, dataset: { type: 'folder', path: 'a\u0000b' } }, 'dataset.path'],
  ['upload id that is not a UUID', { ...valid, dataset: { type: 'upload', id: 'x' } }, 'dataset.id'],
  ['synthetic with one class', { ...valid, dataset: { ...synthetic, numClasses: 1 } }, 'dataset.numClasses'],
  ['synthetic with oversized images', { ...valid, dataset: { ...synthetic, imageSize: 100000 } }, 'dataset.imageSize'],
  ['trainableFrom unknown stage', { ...valid, mode: 'fine_tuning', fineTuning: { trainableFrom: 'layer9' } }, 'fineTuning.trainableFrom'],
  ['freezeBatchNorm as a string', { ...valid, mode: 'fine_tuning', fineTuning: { freezeBatchNorm: 'yes' } }, 'fineTuning.freezeBatchNorm'],
  ['class weights that do not match a synthetic dataset', { ...valid, classWeights: [1, 2] }, 'classWeights'],
  ['label smoothing above 0.5', { ...valid, labelSmoothing: 0.7 }, 'labelSmoothing'],
  ['a precision no kernel runs', { ...valid, precision: 'int8' }, 'precision'],
  ['a JSON array', [valid], '(root)'],
  ['a string', 'train please', '(root)'],
  ['null', null, '(root)'],
];

describe('JobSpec', () => {
  for (const [description, spec, field] of MALFORMED) {
    it(`refuses ${description}, naming ${field}`, () => {
      const parsed = JobSpec.safeParse(spec);
      assert.equal(parsed.success, false);
      const paths = fieldErrorsOf(parsed.error).map((e) => e.path);
      assert.ok(paths.includes(field), `expected ${field} among ${paths.join(', ')}`);
    });
  }

  it('fills the defaults of a training mode', () => {
    const spec = JobSpec.parse({ mode: 'fine_tuning', dataset: synthetic });
    assert.equal(spec.mode, 'fine_tuning');
    assert.deepEqual(spec.mode === 'fine_tuning' && spec.fineTuning, { trainableFrom: 'conv1', freezeBatchNorm: true });
    assert.deepEqual(
      { weights: spec.weights, inputSize: spec.inputSize, batchSize: spec.batchSize, epochs: spec.mode === 'fine_tuning' && spec.epochs },
      { weights: 'imagenet', inputSize: 224, batchSize: 16, epochs: 10 },
    );
  });

  it('takes precision auto (the default), fp32 or bf16', () => {
    assert.equal(JobSpec.parse(valid).precision, 'auto');
    for (const precision of ['fp32', 'bf16']) assert.equal(JobSpec.parse({ ...valid, precision }).precision, precision);
  });

  it('takes a pretrained spec without a dataset (summary, export and predictions only) or with one (evaluation)', () => {
    assert.equal(JobSpec.parse({ mode: 'pretrained' }).dataset, undefined);
    assert.deepEqual(JobSpec.parse({ mode: 'pretrained', dataset: synthetic }).dataset, { ...synthetic, seed: 0 });
  });

  it('names every failing field at once', () => {
    const parsed = JobSpec.safeParse({
      mode: 'feature_extraction',
      inputSize: 100,
      fineTuning: {},
      dataset: { type: 'folder', path: '../etc' },
    });
    assert.deepEqual(
      fieldErrorsOf(parsed.error!)
        .map((e) => e.path)
        .sort(),
      ['dataset.path', 'fineTuning', 'inputSize'],
    );
  });
});
