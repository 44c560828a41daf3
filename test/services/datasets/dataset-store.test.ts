import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { DatasetStore } from '../../../services/datasets/dataset-store.js';
import { tempDir } from '../../helpers/torch.js';

describe('the dataset store', () => {
  it('sweeps what a crashed process left in .incoming, but not an upload arriving now', async () => {
    const dataDir = tempDir('dataset-store');
    try {
      const incoming = path.join(dataDir, 'uploads', '.incoming');
      mkdirSync(path.join(incoming, 'crashed', 'cats'), { recursive: true });
      writeFileSync(path.join(incoming, 'crashed.tar.gz'), 'half');
      mkdirSync(path.join(incoming, 'arriving'), { recursive: true });
      const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
      for (const name of ['crashed', 'crashed.tar.gz']) utimesSync(path.join(incoming, name), twoHoursAgo, twoHoursAgo);
      const store = new DatasetStore(dataDir, new LocalArtifactStore(path.join(dataDir, 'artifacts')), {
        maxArchiveBytes: 1024,
        maxFiles: 1,
        maxUnpackedBytes: 1024,
        quotaBytes: 1024,
      });
      assert.deepEqual((await store.sweepIncoming(3600_000)).sort(), ['crashed', 'crashed.tar.gz']);
      assert.deepEqual(readdirSync(incoming), ['arriving']);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
