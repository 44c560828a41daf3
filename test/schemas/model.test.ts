import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fieldErrorsOf } from '../../common/errors.js';
import { ModelConfig } from '../../schemas/model.js';

describe('ModelConfig', () => {
  it("keeps pretrained on ImageNet's 1000 classes and fineTuning to fine_tuning", () => {
    const paths = (config: object) => {
      const parsed = ModelConfig.safeParse(config);
      return parsed.success ? [] : fieldErrorsOf(parsed.error).map((e) => e.path);
    };
    assert.deepEqual(paths({ mode: 'pretrained', numClasses: 1000, inputSize: 224 }), []);
    assert.deepEqual(paths({ mode: 'pretrained', numClasses: 5, inputSize: 224 }), ['numClasses']);
    assert.deepEqual(
      paths({ mode: 'feature_extraction', numClasses: 5, inputSize: 64, fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: true } }),
      ['fineTuning'],
    );
    assert.deepEqual(paths({ mode: 'fine_tuning', numClasses: 5, inputSize: 40 }), ['inputSize']);
  });
});
