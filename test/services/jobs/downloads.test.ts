import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { NotFoundError } from '../../../common/errors.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import { emptyMetrics } from '../../../schemas/metrics.js';
import { checkpointDownload, modelFolder } from '../../../services/jobs/downloads.js';
import { tempDir } from '../../helpers/torch.js';

describe('checkpoint downloads', () => {
  const root = tempDir('downloads');
  const artifacts = new JobArtifacts(new LocalArtifactStore(root), '3b241101-e2bb-4255-8caf-4136c566a962');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('picks the final model, the latest, the best or a numbered epoch, among complete ones only', async () => {
    await assert.rejects(modelFolder(artifacts, { kind: 'final' }), NotFoundError);
    await assert.rejects(modelFolder(artifacts, { kind: 'latest' }), /no checkpoint yet/);
    for (const epoch of [1, 2]) await artifacts.commitCheckpoint({ epoch, history: [], optimizerWeights: [] });
    await artifacts.store.write(`${artifacts.checkpointFolder(3)}/weights.bin`, 'half-written');
    assert.equal((await modelFolder(artifacts, { kind: 'latest' })).label, 'epoch-2');
    await assert.rejects(modelFolder(artifacts, { kind: 'epoch', epoch: 3 }), /no checkpoint for epoch 3/);
    await assert.rejects(modelFolder(artifacts, { kind: 'best' }), /no validated epoch/);
    await artifacts.writeMetrics({ ...emptyMetrics(), bestEpoch: 1 });
    assert.equal((await modelFolder(artifacts, { kind: 'best' })).label, 'epoch-1');
  });

  it('serves a stored file with its sha256 as the ETag', async () => {
    await artifacts.store.write(artifacts.torchvisionWeightsKey(artifacts.finalFolder), 'weights');
    await artifacts.store.write(`${artifacts.finalFolder}/metadata.json`, '{}');
    const download = await checkpointDownload(artifacts, { kind: 'final' }, 'safetensors');
    assert.equal(download.etag, createHash('sha256').update('weights').digest('hex'));
    assert.equal(download.filename, `${artifacts.jobId}-final.safetensors`);
    assert.equal(await text(download.open()), 'weights');
    await assert.rejects(checkpointDownload(artifacts, { kind: 'epoch', epoch: 1 }, 'safetensors'), /written for the final model/);
  });
});
