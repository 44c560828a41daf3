import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { Config } from '../../../schemas/config.js';
import { DatasetSpec } from '../../../schemas/dataset.js';
import type { PreflightReport } from '../../../workers/data/preflight.js';
import type { PreflightRequest } from '../../../workers/data/preflight.thread.js';
import { ArchiveError } from '../../datasets/archive.js';
import { DatasetStore, UploadTooLargeError } from '../../datasets/dataset-store.js';
import { drainBody, HttpProblem, parseOrThrow } from '../problem.js';
import { ThreadRpc } from '../thread-rpc.js';

const PreflightOptions = {
  validationSplit: z.number().min(0).max(0.9).default(0.2),
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
  minImagesPerClass: z.number().int().min(1).max(100_000).default(10),
};
const PreflightBody = z.strictObject({ dataset: DatasetSpec, ...PreflightOptions });
const UploadQuery = z.strictObject({ name: z.string().min(1).max(200).optional() });
const ARCHIVE_TYPES: Record<string, 'tar.gz' | 'zip'> = {
  'application/gzip': 'tar.gz',
  'application/x-gzip': 'tar.gz',
  'application/x-tar+gzip': 'tar.gz',
  'application/zip': 'zip',
  'application/x-zip-compressed': 'zip',
};

/** Dataset uploads (tar.gz or zip of class folders) and preflight reports, without training. */
export function datasetsRoutes(app: FastifyInstance, { config }: { config: Config }): void {
  const thread = new ThreadRpc<PreflightRequest, PreflightReport>(new URL('../../../workers/data/preflight.thread.ts', import.meta.url));
  app.addHook('onClose', () => thread.close());
  const datasets = new DatasetStore(config.DATA_DIR, {
    maxArchiveBytes: config.UPLOAD_LIMIT_BYTES, maxFiles: config.UPLOAD_MAX_FILES, maxUnpackedBytes: config.UPLOAD_MAX_UNPACKED_BYTES,
  });
  const defaults = { validationSplit: 0.2, seed: 0, minImagesPerClass: 10 };
  // Archives are streamed to disk as they arrive, never buffered: hand the route the raw stream.
  app.addContentTypeParser(Object.keys(ARCHIVE_TYPES), (_request, payload, done) => done(null, payload));

  app.post('/v1/datasets/preflight', async (request) => {
    const body = parseOrThrow(PreflightBody, request.body, 'body');
    return thread.call({ dataDir: config.DATA_DIR, ...body }).catch((error: Error) => {
      const message = error.message.replaceAll(config.DATA_DIR, 'DATA_DIR');
      throw new HttpProblem(400, 'Invalid request', message, { in: 'body', errors: [{ path: 'dataset', message }] });
    });
  });

  app.post('/v1/datasets', async (request, reply) => {
    try {
      return await upload(request, reply);
    } catch (error) {
      await drainBody(request, reply);
      throw error;
    }
  });

  async function upload(request: FastifyRequest, reply: FastifyReply) {
    const { name } = parseOrThrow(UploadQuery, request.query, 'query');
    const type = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const format = ARCHIVE_TYPES[type];
    if (!format) throw new HttpProblem(415, 'Unsupported Media Type', `send the archive as application/gzip (tar.gz) or application/zip, not ${type || 'nothing'}`);
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > config.UPLOAD_LIMIT_BYTES) {
      throw new HttpProblem(413, 'Payload Too Large', `the archive is ${declared} bytes; the limit is ${config.UPLOAD_LIMIT_BYTES}`);
    }
    try {
      const record = await datasets.create(request.body as Readable, format, name ?? `upload.${format}`, (id) =>
        thread.call({ dataDir: config.DATA_DIR, dataset: { type: 'upload', id }, ...defaults }),
      );
      return reply.code(201).header('location', `/v1/datasets/${record.id}`).send(record);
    } catch (error) {
      if (error instanceof UploadTooLargeError) throw new HttpProblem(413, 'Payload Too Large', error.message);
      if (error instanceof ArchiveError) throw new HttpProblem(400, 'Invalid archive', error.message, { in: 'body', errors: [{ path: 'archive', message: error.message }] });
      throw error;
    }
  }

  app.get('/v1/datasets', async () => ({ items: (await datasets.list()).map(({ preflight: _preflight, ...summary }) => summary) }));

  app.get('/v1/datasets/:id', async (request) => {
    const { id } = request.params as { id: string };
    const record = await datasets.get(id);
    if (!record) throw new HttpProblem(404, 'Not Found', `no dataset with id ${id}`);
    return record;
  });

  app.delete('/v1/datasets/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    if (!(await datasets.remove(id))) throw new HttpProblem(404, 'Not Found', `no dataset with id ${id}`);
    return reply.code(204).send();
  });
}
