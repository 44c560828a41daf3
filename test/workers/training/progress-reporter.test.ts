import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SKIPPED_FILES_IN_STATUS } from '../../../schemas/job-status.js';
import type { WorkerProgress } from '../../../schemas/queue.js';
import type { JobContext } from '../../../workers/training/job-context.js';
import { ProgressReporter } from '../../../workers/training/progress-reporter.js';

function reporter(totalEpochs: number) {
  const reports: WorkerProgress[] = [];
  const ctx = {
    backend: { choice: 'wasm', backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm', version: '4.22.0' },
    report: async (progress: WorkerProgress) => void reports.push(progress),
  } as unknown as JobContext;
  return { progress: new ProgressReporter(ctx, totalEpochs), reports };
}

describe('progress reports', () => {
  it('reports every phase change, and percent over all epochs and steps', async () => {
    const { progress, reports } = reporter(2);
    progress.planSteps(4);
    await progress.phase('loading_data');
    await progress.update({ phase: 'training', epoch: 2, step: 2 }, true);
    await progress.phase('saving');
    // Never 'done': the job is done only once the queue has its result, and the API says so then.
    assert.deepEqual(
      reports.map((r) => r.phase),
      ['loading_data', 'training', 'saving'],
    );
    assert.equal(reports[1].percent, 75, 'epoch 2 of 2, step 2 of 4: 6 of 8 steps');
  });

  it('carries a bounded sample of the skipped files and their count', async () => {
    const { progress, reports } = reporter(1);
    const skipped = Array.from({ length: 500 }, (_, i) => ({ file: `cats/${i}.jpg`, reason: 'corrupt' }));
    await progress.skipped(skipped);
    assert.equal(reports[0].skippedFiles.length, SKIPPED_FILES_IN_STATUS);
    assert.equal(reports[0].skippedFileCount, 500);
  });
});
