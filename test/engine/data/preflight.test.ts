import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readImageFolder } from '../../../common/image-folder.js';
import { preflight, withoutBadFiles } from '../../../engine/data/preflight.js';
import { MESSY_BAD_FILES, writeMessyDataset } from '../../helpers/images.js';
import { tempDir } from '../../helpers/torch.js';

describe('dataset preflight', () => {
  let root: string;
  before(async () => {
    root = tempDir('preflight');
    await writeMessyDataset(root);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('lists exactly the unusable files, each with its reason', async () => {
    const report = await preflight(await readImageFolder(root), { validationSplit: 0.2, seed: 0, minImagesPerClass: 10 });
    assert.deepEqual(
      Object.fromEntries(report.bad.map((b) => [b.file, b.reason])),
      MESSY_BAD_FILES,
    );
    assert.ok(report.bad.every((b) => b.detail.length > 0));
    assert.equal(report.images, 2 * 10 + 1 + 4, 'ten good images per class, one copy, four broken files');
    assert.equal(report.usable, 21);
  });

  it('counts an SVG, even named .png, as not an image: libvips renders drawings, the model reads photos', async () => {
    const drawing = path.join(root, 'dogs', 'drawing.png');
    writeFileSync(drawing, '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48"><circle cx="24" cy="24" r="20"/></svg>');
    try {
      const report = await preflight(await readImageFolder(root), { validationSplit: 0.2, seed: 0, minImagesPerClass: 10 });
      const bad = report.bad.find((b) => b.file === 'dogs/drawing.png');
      assert.equal(bad?.reason, 'not_an_image', JSON.stringify(report.bad));
      assert.match(bad.detail, /^svg is not a photo format/);
      assert.equal(report.formats.svg, undefined);
    } finally {
      rmSync(drawing);
    }
  });

  it('digests the file list and bytes: the same data gives the same digest, one changed byte another', async () => {
    const options = { validationSplit: 0.2, seed: 0, minImagesPerClass: 10 };
    const first = await preflight(await readImageFolder(root), options);
    assert.match(first.digest ?? '', /^[0-9a-f]{64}$/);
    assert.equal((await preflight(await readImageFolder(root), { ...options, seed: 5 })).digest, first.digest, 'the split does not enter it');
    const file = path.join(root, 'cats/plain-0-copy.png');
    const bytes = readFileSync(file);
    try {
      writeFileSync(file, Buffer.concat([bytes, Buffer.from([0])]));
      assert.notEqual((await preflight(await readImageFolder(root), options)).digest, first.digest);
      renameSync(file, path.join(root, 'cats/plain-0-moved.png'));
      writeFileSync(path.join(root, 'cats/plain-0-moved.png'), bytes);
      assert.notEqual((await preflight(await readImageFolder(root), options)).digest, first.digest, 'a renamed file changes it');
    } finally {
      rmSync(path.join(root, 'cats/plain-0-moved.png'), { force: true });
      writeFileSync(file, bytes);
    }
    assert.equal((await preflight(await readImageFolder(root), options)).digest, first.digest);
  });

  it('reports duplicates, colour modes, bit depths, rotation, small classes and class weights', async () => {
    const report = await preflight(await readImageFolder(root), { validationSplit: 0.2, seed: 0, minImagesPerClass: 10 });
    assert.deepEqual(report.duplicates.map((d) => d.files), [['cats/plain-0-copy.png', 'cats/plain-0.png']]);
    assert.equal(report.colourModes.cmyk, 2);
    assert.equal(report.colourModes['b-w'], 2);
    assert.equal(report.colourModes.rgb16, 2);
    assert.equal(report.bitDepths.ushort, 2);
    assert.equal(report.exifRotated, 2);
    assert.equal(report.withAlpha, 2);
    assert.deepEqual(report.classes, [{ name: 'cats', images: 13, usable: 11 }, { name: 'dogs', images: 12, usable: 10 }]);
    assert.deepEqual(report.smallClasses, []);
    assert.ok(Math.abs(report.suggestedClassWeights.cats - 21 / (2 * 11)) < 1e-9);
    assert.deepEqual(report.sizes, { minWidth: 48, maxWidth: 48, minHeight: 48, maxHeight: 48, medianWidth: 48, medianHeight: 48 });
    const usable = withoutBadFiles(await readImageFolder(root), report);
    assert.equal(usable.images.length, 21);
  });
});
