import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { readImageFolder } from '../../../common/image-folder.js';
import { inspectionKey, preflight } from '../../../engine/data/preflight.js';
import { InspectedFiles, type PreflightReport } from '../../../schemas/dataset.js';
import { storeInspectionCache } from '../../../workers/training/inspection-cache.js';
import { MESSY_BAD_FILES, writeMessyDataset } from '../../helpers/images.js';
import { tempDir } from '../../helpers/torch.js';

const OPTIONS = { validationSplit: 0.25, seed: 1, minImagesPerClass: 1 };
const POLICY = { maxBytes: 1e9, maxAgeMs: 3600_000 };

describe("the preflight's inspections kept by the data set's digest", () => {
  const scratch = tempDir('inspection-cache');
  const root = path.join(scratch, 'pets');
  const store = new LocalArtifactStore(path.join(scratch, 'artifacts'));
  const cache = storeInspectionCache(store, POLICY);
  const entry = (digest: string) => `preflight-cache/${inspectionKey(digest)}.json`;
  before(() => writeMessyDataset(root));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('answers a second preflight of the same files from the store, decoding none of them', async () => {
    const first = await preflight(await readImageFolder(root), OPTIONS, cache);
    // libvips words a damaged file's error differently from one call to the next: compared without it.
    const withoutDetails = (report: PreflightReport) => ({ ...report, bad: report.bad.map(({ file, reason }) => ({ file, reason })) });
    assert.deepEqual(withoutDetails(first), withoutDetails(await preflight(await readImageFolder(root), OPTIONS)), 'as without a cache');
    // Written over with a mark: a second preflight that decoded the files again would not show it.
    const kept = InspectedFiles.parse(JSON.parse((await store.read(entry(first.digest!))).toString()));
    await store.write(entry(first.digest!), JSON.stringify(kept.map((file) => ('sha256' in file ? { ...file, format: 'kept' } : file))));
    const again = await preflight(await readImageFolder(root), OPTIONS, cache);
    assert.equal(again.digest, first.digest);
    assert.deepEqual(again.formats, { kept: first.usable });
    assert.deepEqual(again.classes, first.classes);
    assert.deepEqual(again.bad.map((b) => b.file).sort(), Object.keys(MESSY_BAD_FILES).sort());
  });

  it('does not read inspections an earlier preflight made by other rules (before drawings were refused)', async () => {
    const { digest } = await preflight(await readImageFolder(root), OPTIONS, cache);
    const kept = InspectedFiles.parse(JSON.parse((await store.read(entry(digest!))).toString()));
    await store.remove(entry(digest!));
    const marked = kept.map((file) => ('sha256' in file ? { ...file, format: 'old' } : file));
    await store.write(`preflight-cache/${digest}.json`, JSON.stringify(marked));
    const again = await preflight(await readImageFolder(root), OPTIONS, cache);
    assert.ok(!Object.keys(again.formats).includes('old'), JSON.stringify(again.formats));
    assert.ok(await store.stat(entry(digest!)), 'kept again under the rules of now');
  });

  it('inspects every file again when one byte changed or the kept entry does not parse', async () => {
    const before = await preflight(await readImageFolder(root), OPTIONS, cache);
    await store.write(entry(before.digest!), '{"not": "inspections"');
    assert.deepEqual(
      (await preflight(await readImageFolder(root), OPTIONS, cache)).formats,
      (await preflight(await readImageFolder(root), OPTIONS)).formats,
    );
    assert.doesNotThrow(
      () => InspectedFiles.parse(JSON.parse(readFileSync(path.join(scratch, 'artifacts', entry(before.digest!)), 'utf8'))),
      'written over',
    );
    const [first] = (await readImageFolder(root)).images;
    appendFileSync(path.join(root, first.file), Buffer.from([0]));
    const changed = await preflight(await readImageFolder(root), OPTIONS, cache);
    assert.notEqual(changed.digest, before.digest);
    assert.ok(!Object.keys(changed.formats).includes('kept'));
  });
});
