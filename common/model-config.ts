import { isTrainingSpec, type JobSpec } from '../schemas/job-spec.js';
import { IMAGENET_CLASSES, type ModelConfig } from '../schemas/model.js';

/** The network a spec trains: its mode's ResNet-50 with a head of `numClasses` (ImageNet's for pretrained). */
export function modelConfigOf(spec: JobSpec, numClasses: number): ModelConfig {
  return {
    mode: spec.mode,
    numClasses: isTrainingSpec(spec) ? numClasses : IMAGENET_CLASSES,
    inputSize: spec.inputSize,
    seed: spec.seed,
    fineTuning: spec.mode === 'fine_tuning' ? spec.fineTuning : undefined,
  };
}
