import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as tf from '../../../engine/tf.js';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import { buildResNet50, type ResNet50 } from '../../../engine/model/resnet50.js';
import { trainStep } from '../../../engine/training/train-step.js';
import type { ModelMetadata } from '../../../schemas/artifacts.js';
import type { EpochMetrics } from '../../../schemas/metrics.js';
import { dropResumeState, resumeFromLatestCheckpoint, writeCheckpoint } from '../../../workers/training/checkpoints.js';
import { useTestBackend } from '../../helpers/tf.js';
import { tempDir } from '../../helpers/torch.js';

const build = (seed: number) => buildResNet50({ mode: 'feature_extraction', numClasses: 2, inputSize: 32, seed });
const headKernel = (resnet: ResNet50) => resnet.model.getLayer('fc').getWeights()[0].dataSync();

describe('resuming a job whose final model is saved', () => {
  it("goes on from the last epoch's weights without the optimiser state saving the final model dropped", async () => {
    await useTestBackend();
    const scratch = tempDir('resume-after-final');
    try {
      const artifacts = new JobArtifacts(new LocalArtifactStore(scratch), '3b241101-e2bb-4255-8caf-4136c566a962');
      const trained = build(1);
      const optimizer = tf.train.adam(0.01);
      trainStep(
        trained.network,
        optimizer,
        tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 2),
        tf.oneHot(tf.tensor1d([0, 1], 'int32'), 2) as tf.Tensor2D,
      );
      const epoch: EpochMetrics = {
        epoch: 1,
        trainLoss: 0.7,
        trainAccuracy: 0.5,
        validationLoss: 0.6,
        validationAccuracy: 0.5,
        validationTop5Accuracy: 1,
        learningRate: 0.01,
        seconds: 1,
      };
      await writeCheckpoint(
        artifacts,
        { resnet: trained, frozenFrom: null },
        optimizer,
        { epoch: 1, history: [epoch] },
        {} as ModelMetadata,
      );
      // As saveFinalModel leaves it: the final model complete, the checkpoints' optimiser state gone.
      await artifacts.writeModelMetadata(artifacts.finalFolder, {} as ModelMetadata);
      await dropResumeState(artifacts);

      const retried = build(7);
      assert.notDeepEqual(headKernel(retried), headKernel(trained), 'another draw before the resume');
      const resumed = await resumeFromLatestCheckpoint(artifacts, retried, tf.train.adam(0.01));
      assert.deepEqual(resumed, { epoch: 1, history: [epoch], position: null, trainingDone: true });
      assert.deepEqual(headKernel(retried), headKernel(trained));
      trained.dispose();
      retried.dispose();
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
