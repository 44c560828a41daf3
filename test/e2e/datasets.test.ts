import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import { finished, pollJob, startService, type TestService } from '../helpers/service.js';
import { MESSY_BAD_FILES, writeMessyDataset } from '../helpers/images.js';
import { DEBIAN_PYTHON, tempDir } from '../helpers/torch.js';

const LIMITS = {
  UPLOAD_LIMIT_BYTES: String(5 * 1024 * 1024),
  UPLOAD_MAX_UNPACKED_BYTES: String(10 * 1024 * 1024),
  UPLOAD_MAX_FILES: '500',
};

/** Python's tarfile and zipfile write whatever entry names and types they are told to. */
function craft(
  kind: 'tar' | 'zip',
  file: string,
  entries: Array<{ name: string; type?: 'file' | 'symlink' | 'hardlink'; size?: number; target?: string }>,
) {
  const program = `
import io, json, sys, tarfile, zipfile
kind, out, entries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if kind == 'tar':
    with tarfile.open(out, 'w:gz') as t:
        for e in entries:
            info = tarfile.TarInfo(e['name'])
            if e.get('type') == 'symlink':
                info.type, info.linkname = tarfile.SYMTYPE, e['target']
                t.addfile(info)
            elif e.get('type') == 'hardlink':
                info.type, info.linkname = tarfile.LNKTYPE, e['target']
                t.addfile(info)
            else:
                data = b'\\0' * e.get('size', 16)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
else:
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        for e in entries:
            if e.get('type') == 'symlink':
                info = zipfile.ZipInfo(e['name'])
                info.external_attr = (0o120777 << 16)
                z.writestr(info, e['target'])
            else:
                z.writestr(e['name'], b'\\0' * e.get('size', 16))
`;
  execFileSync(DEBIAN_PYTHON, ['-c', program, kind, file, JSON.stringify(entries)]);
}

describe('dataset uploads', () => {
  let service: TestService;
  let scratch: string;
  let uploads: string;

  before(async () => {
    service = await startService('datasets', LIMITS);
    await service.startWorker();
    scratch = tempDir('uploads');
    uploads = path.join(service.config.DATA_DIR, 'uploads');
    mkdirSync(path.join(scratch, 'messy', 'pets'), { recursive: true });
    await writeMessyDataset(path.join(scratch, 'messy', 'pets'));
  });
  after(async () => {
    await service.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const upload = (file: string, type: string) =>
    service.http().post('/v1/datasets?name=pets').set('content-type', type).send(readFileSync(file));

  it('takes a tar.gz of class folders, preflights it, trains on it, and deletes it', async () => {
    const archive = path.join(scratch, 'pets.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: path.join(scratch, 'messy') }, ['pets']);
    const created = await upload(archive, 'application/gzip');
    assert.equal(created.status, 201, created.text);
    const { id } = created.body;
    assert.equal(created.headers.location, `/v1/datasets/${id}`);
    assert.deepEqual(created.body.classNames, ['cats', 'dogs'], 'the wrapping "pets" folder is unwrapped');
    assert.deepEqual(
      Object.fromEntries(created.body.preflight.bad.map((b: { file: string; reason: string }) => [b.file, b.reason])),
      MESSY_BAD_FILES,
    );
    assert.equal((await service.http().get('/v1/datasets')).body.items.length, 1);
    assert.equal((await service.http().get(`/v1/datasets/${id}`)).body.preflight.usable, 21);

    const job = await service
      .http()
      .post('/v1/jobs')
      .send({
        mode: 'feature_extraction',
        weights: 'random',
        inputSize: 32,
        epochs: 1,
        dataset: { type: 'upload', id },
      });
    assert.equal(job.status, 202, job.text);
    const status = await pollJob(service, job.body.id, finished);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));
    assert.deepEqual(Object.fromEntries(status.skippedFiles.map((s) => [s.file, s.reason])), MESSY_BAD_FILES);

    assert.equal((await service.http().delete(`/v1/datasets/${id}`)).status, 204);
    assert.equal((await service.http().get(`/v1/datasets/${id}`)).status, 404);
    const missing = await service
      .http()
      .post('/v1/jobs')
      .send({ mode: 'feature_extraction', dataset: { type: 'upload', id } });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.errors[0].path, 'dataset.id');
  });

  it('checks an upload on a thread of its own: a long preflight someone asked for does not hold it up', async () => {
    const archive = path.join(scratch, 'pets-again.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: path.join(scratch, 'messy') }, ['pets']);
    const answered: string[] = [];
    const synthetic = { type: 'synthetic', numClasses: 4, imagesPerClass: 100, imageSize: 256, seed: 77 };
    const preflight = service
      .http()
      .post('/v1/datasets/preflight')
      .send({ dataset: synthetic })
      .then((response) => (answered.push('preflight'), response));
    const uploaded = upload(archive, 'application/gzip').then((response) => (answered.push('upload'), response));
    const [preflighted, created] = await Promise.all([preflight, uploaded]);
    assert.equal(preflighted.status, 200, preflighted.text);
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(answered, ['upload', 'preflight']);
    assert.equal((await service.http().delete(`/v1/datasets/${created.body.id}`)).status, 204);
  });

  it('takes a zip of class folders', async () => {
    const archive = path.join(scratch, 'pets.zip');
    execFileSync('zip', ['-qr', archive, '.'], { cwd: path.join(scratch, 'messy', 'pets') });
    const created = await upload(archive, 'application/zip');
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.classNames, ['cats', 'dogs']);
    assert.equal(created.body.images, 25);
  });

  it('refuses hostile archives with a 4xx and leaves nothing outside the dataset folder', async () => {
    const before = new Set(readdirSync(uploads));
    const hostile: Array<[string, 'tar' | 'zip', Parameters<typeof craft>[2], number, RegExp]> = [
      ['../ entry', 'tar', [{ name: 'cats/a.png' }, { name: '../evil.txt' }], 400, /\.\./],
      ['absolute path', 'tar', [{ name: 'cats/a.png' }, { name: '/tmp/retrain-evil.txt' }], 400, /absolute/],
      ['symlink', 'tar', [{ name: 'cats/a.png' }, { name: 'cats/link.png', type: 'symlink', target: '/etc/passwd' }], 400, /SymbolicLink/],
      ['hard link', 'tar', [{ name: 'cats/a.png' }, { name: 'cats/hard.png', type: 'hardlink', target: 'cats/a.png' }], 400, /Link/],
      ['zip ../ entry', 'zip', [{ name: 'cats/a.png' }, { name: '../evil.txt' }], 400, /\.\.|invalid relative path/],
      [
        'zip symlink',
        'zip',
        [{ name: 'cats/a.png' }, { name: 'cats/link.png', type: 'symlink', target: '/etc/passwd' }],
        400,
        /symbolic link/,
      ],
      ['zip bomb past the unpacked limit', 'zip', [{ name: 'cats/a.png', size: 12 * 1024 * 1024 }], 400, /unpacks to more than/],
      ['too many files', 'tar', Array.from({ length: 501 }, (_, i) => ({ name: `cats/${i}.png` })), 400, /more than 500 files/],
    ];
    for (const [label, kind, entries, status, message] of hostile) {
      const file = path.join(scratch, `hostile.${kind === 'tar' ? 'tar.gz' : 'zip'}`);
      craft(kind, file, entries);
      const response = await upload(file, kind === 'tar' ? 'application/gzip' : 'application/zip');
      assert.equal(response.status, status, `${label}: ${response.text}`);
      assert.match(response.headers['content-type'], /problem\+json/, label);
      assert.match(response.body.detail, message, label);
    }
    const big = await service
      .http()
      .post('/v1/datasets')
      .set('content-type', 'application/gzip')
      .send(Buffer.alloc(6 * 1024 * 1024));
    assert.equal(big.status, 413);
    const wrongType = await service.http().post('/v1/datasets').set('content-type', 'application/json').send({ a: 1 });
    assert.equal(wrongType.status, 415);

    assert.deepEqual(new Set(readdirSync(uploads)), before, 'no dataset was added');
    assert.deepEqual(readdirSync(path.join(uploads, '.incoming')), [], 'nothing left half-unpacked');
    assert.ok(!existsSync(path.join(service.config.DATA_DIR, 'evil.txt')) && !existsSync(path.join(uploads, 'evil.txt')));
    assert.ok(!existsSync('/tmp/retrain-evil.txt'));
  });
});
