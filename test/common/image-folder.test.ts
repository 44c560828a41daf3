import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { DatasetError, locateDatasetFolder } from '../../common/image-folder.js';
import { tempDir } from '../helpers/torch.js';

describe('locating a dataset folder', () => {
  it('says a dataset is missing, naming it, when DATA_DIR itself was never made', async () => {
    const scratch = tempDir('no-data-dir');
    const dataDir = path.join(scratch, 'data');
    after(() => rmSync(scratch, { recursive: true, force: true }));
    await assert.rejects(
      locateDatasetFolder({ type: 'folder', path: 'pets' }, dataDir),
      (error: Error) => error instanceof DatasetError && /dataset folder not found: pets/.test(error.message),
    );
    await assert.rejects(
      locateDatasetFolder({ type: 'upload', id: '3b241101-e2bb-4255-8caf-4136c566a962' }, dataDir),
      (error: Error) => error instanceof DatasetError && /no uploaded dataset 3b241101/.test(error.message),
    );
  });
});
