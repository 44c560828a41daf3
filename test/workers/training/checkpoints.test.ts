import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import { pruneCheckpoints } from '../../../workers/training/checkpoints.js';
import { tempDir } from '../../helpers/torch.js';

describe('the checkpoint policy', () => {
  it('keeps the latest whole, the best and every Nth as weights only, and removes the rest with their downloads', async () => {
    const scratch = tempDir('checkpoint-policy');
    try {
      const store = new LocalArtifactStore(scratch);
      const artifacts = new JobArtifacts(store, '3b241101-e2bb-4255-8caf-4136c566a962');
      for (let epoch = 1; epoch <= 6; epoch++) {
        const folder = artifacts.checkpointFolder(epoch);
        for (const file of ['weights.bin', 'optimizer.bin', 'state.json']) await store.write(`${folder}/${file}`, 'x');
        await store.write(artifacts.download(`epoch-${epoch}`, 'tar.gz').key, 'archive');
      }
      await store.write(`${artifacts.checkpointFolder(7)}/weights.bin`, 'half-written by a killed attempt');

      await pruneCheckpoints(artifacts, { latest: 6, best: 2, keepEveryN: 4 });

      assert.deepEqual(await artifacts.checkpointEpochs(), [2, 4, 6]);
      assert.deepEqual(await store.list(artifacts.checkpointFolder(6)), ['optimizer.bin', 'state.json', 'weights.bin']);
      for (const kept of [2, 4]) assert.deepEqual(await store.list(artifacts.checkpointFolder(kept)), ['state.json', 'weights.bin']);
      assert.deepEqual(await store.list(`${artifacts.root}/downloads`), ['epoch-2.tar.gz', 'epoch-4.tar.gz', 'epoch-6.tar.gz']);

      await store.write(`${artifacts.checkpointFolder(7)}/state.json`, 'x');
      await pruneCheckpoints(artifacts, { latest: 7, best: null, keepEveryN: 0 });
      assert.deepEqual(await artifacts.checkpointEpochs(), [7], 'without a best epoch or N, only the latest stays');
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
