import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { LocalArtifactStore } from '../../common/artifact-store.js';
import { JobArtifacts } from '../../common/job-artifacts.js';
import { emptyMetrics } from '../../schemas/metrics.js';
import { tempDir } from '../helpers/torch.js';

describe("a job's artifacts", () => {
  const root = tempDir('job-artifacts');
  const store = new LocalArtifactStore(root);
  const artifacts = new JobArtifacts(store, '3b241101-e2bb-4255-8caf-4136c566a962');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('lays a job out under jobs/<id>', () => {
    assert.equal(artifacts.root, 'jobs/3b241101-e2bb-4255-8caf-4136c566a962');
    assert.equal(artifacts.checkpointFolder(3), `${artifacts.root}/checkpoints/epoch-0003`);
    assert.equal(artifacts.checkpointFolder(12345), `${artifacts.root}/checkpoints/epoch-12345`);
    assert.equal(artifacts.finalFolder, `${artifacts.root}/final`);
    assert.deepEqual(artifacts.epochFolder(3), { folder: artifacts.checkpointFolder(3), label: 'epoch-3' });
  });

  it('counts an epoch checkpoint only once its state is committed, in epoch order', async () => {
    for (const epoch of [2, 10, 1]) await store.write(`${artifacts.checkpointFolder(epoch)}/weights.bin`, 'w');
    assert.deepEqual(await artifacts.completeCheckpoints(), []);
    await artifacts.commitCheckpoint({ epoch: 10, history: [], optimizerWeights: [] });
    await artifacts.commitCheckpoint({ epoch: 2, history: [], optimizerWeights: [] });
    await store.write(`${artifacts.root}/checkpoints/notes.txt`, 'not a checkpoint');
    assert.deepEqual(await artifacts.completeCheckpoints(), [2, 10]);
    assert.equal((await artifacts.readCheckpointState(10))?.epoch, 10);
    assert.equal(await artifacts.readCheckpointState(1), null);
  });

  it('reads back what it wrote, parsed, and refuses what does not parse', async () => {
    assert.equal(await artifacts.readMetrics(), null);
    await artifacts.writeMetrics({ ...emptyMetrics(['a', 'b']), bestEpoch: 2 });
    assert.deepEqual((await artifacts.readMetrics())?.classNames, ['a', 'b']);
    await store.write(`${artifacts.root}/summary.json`, JSON.stringify({ mode: 'pretrained', rows: 'not rows' }));
    await assert.rejects(artifacts.readSummary(), /summary\.json does not match its schema/);
  });

  it('knows the final model is complete only once its metadata is written', async () => {
    await store.write(`${artifacts.finalFolder}/model.json`, '{}');
    assert.equal(await artifacts.hasFinalModel(), false);
    await store.write(`${artifacts.finalFolder}/metadata.json`, '{}');
    assert.equal(await artifacts.hasFinalModel(), true);
    await assert.rejects(artifacts.readModelMetadata(artifacts.finalFolder), /metadata\.json does not match its schema/);
  });
});
