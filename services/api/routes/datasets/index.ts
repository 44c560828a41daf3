import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ArtifactStore } from '../../../../common/artifact-store.js';
import { z } from 'zod';
import { ConflictError, TooLargeError, UnavailableError } from '../../../../common/errors.js';
import { DatasetRecord, DatasetSpec, PreflightOptions, PreflightReport } from '../../../../schemas/dataset.js';
import { checkDataset } from '../../../datasets/check-dataset.js';
import { DatasetStore } from '../../../datasets/dataset-store.js';
import type { JobService } from '../../../jobs/job-service.js';
import { allowLongWork } from '../../long-work.js';
import { drainBody, HttpProblem } from '../../problem.js';
import { ThreadRpc } from '../../thread-rpc.js';
import type { PreflightRequest, ThreadSettings } from '../../thread-protocol.js';

const PreflightBody = z.strictObject({ dataset: DatasetSpec, ...PreflightOptions.shape });
const UploadQuery = z.strictObject({
  name: z.string().min(1).max(200).optional().describe('A label for the dataset; default upload.<format>'),
});
const DatasetParams = z.object({ id: z.string().describe('The dataset id (a UUID)') });
const DatasetSummary = DatasetRecord.omit({ preflight: true });
const ARCHIVE_TYPES: Record<string, 'tar.gz' | 'zip'> = {
  'application/gzip': 'tar.gz',
  'application/x-gzip': 'tar.gz',
  'application/x-tar+gzip': 'tar.gz',
  'application/zip': 'zip',
  'application/x-zip-compressed': 'zip',
};

/** Longer than any upload may take (the server's request timeout is 2 minutes). */
const INCOMING_MAX_AGE_MS = 3600_000;

export interface UploadLimits {
  maxArchiveBytes: number;
  maxFiles: number;
  maxUnpackedBytes: number;
  /** Per owner, unpacked, over all their uploads. */
  quotaBytes: number;
  /** Uploads this process receives at once. */
  maxConcurrent: number;
}

/**
 * A preflight reads every image of a dataset: few at a time, and minutes each at most. Uploads have a
 * thread of their own, so a preflight someone asked for (a large synthetic set, say) never holds up
 * the check of an upload whose client waits for its answer.
 */
function preflightThreads(app: FastifyInstance, settings: ThreadSettings, maxPending: number) {
  const thread = () =>
    new ThreadRpc<PreflightRequest, PreflightReport>(new URL('../../threads/preflight.thread.ts', import.meta.url), settings, {
      maxPending,
      timeoutMs: 600_000,
    });
  const threads = { requested: thread(), uploads: thread() };
  app.addHook('onClose', async () => {
    await threads.requested.close();
    await threads.uploads.close();
  });
  return threads;
}

/** Dataset uploads (tar.gz or zip of class folders) and preflight reports, without training. */
const datasetsRoutes: FastifyPluginAsyncZod<{
  jobs: JobService;
  store: ArtifactStore;
  settings: ThreadSettings;
  limits: UploadLimits;
}> = async (app, { jobs, store, settings, limits }) => {
  const { requested, uploads } = preflightThreads(app, settings, limits.maxConcurrent);
  const datasets = new DatasetStore(settings.dataDir, store, limits);
  const migrated = await datasets.migrateRecords();
  if (migrated.length) app.log.info({ migrated }, 'moved dataset records into the artifact store');
  // In the background: the API starts (and says not ready) while the artifact store is away; the next start tries again.
  const indexing = datasets.indexOwners().then(
    (indexed) => indexed.length && app.log.info({ indexed }, "added earlier uploads to their owners' index"),
    (error: Error) => app.log.warn({ err: error.message }, 'could not index earlier uploads by owner; the next start tries again'),
  );
  app.addHook('onClose', () => indexing.then(() => undefined));
  const swept = await datasets.sweepIncoming(INCOMING_MAX_AGE_MS);
  if (swept.length) app.log.warn({ swept }, 'removed uploads left half-received by a crashed process');
  const defaults = PreflightOptions.parse({});
  let receiving = 0;
  // Archives are streamed to disk as they arrive, never buffered: hand the route the raw stream.
  app.addContentTypeParser(Object.keys(ARCHIVE_TYPES), (_request, payload, done) => done(null, payload));
  app.addHook('onError', async (request, reply) => drainBody(request, reply));

  app.post('/datasets/preflight', { schema: { body: PreflightBody, response: { 200: PreflightReport } } }, async (request) => {
    allowLongWork(request);
    const { dataset, ...options } = request.body;
    if (dataset.type !== 'synthetic') await checkDataset(dataset, { dataDir: settings.dataDir, store }, request.caller);
    return requested.call({ dataset, options });
  });

  app.post('/datasets', { schema: { querystring: UploadQuery, response: { 201: DatasetRecord } } }, async (request, reply) => {
    const type = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const format = ARCHIVE_TYPES[type];
    if (!format)
      throw new HttpProblem(
        415,
        'Unsupported Media Type',
        `send the archive as application/gzip (tar.gz) or application/zip, not ${type || 'nothing'}`,
      );
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > limits.maxArchiveBytes)
      throw new TooLargeError(`the archive is ${declared} bytes; the limit is ${limits.maxArchiveBytes}`);
    if (receiving >= limits.maxConcurrent)
      throw new UnavailableError(`this API process is receiving ${receiving} uploads, its most at once; try again shortly`);
    receiving++;
    allowLongWork(request);
    const record = await datasets
      .create(request.caller, request.body as Readable, format, request.query.name ?? `upload.${format}`, (id) =>
        uploads.call({ dataset: { type: 'upload', id }, options: defaults }),
      )
      .finally(() => receiving--);
    return reply.code(201).header('location', `/v1/datasets/${record.id}`).send(record);
  });

  app.get('/datasets', { schema: { response: { 200: z.object({ items: z.array(DatasetSummary) }) } } }, async (request) => ({
    items: (await datasets.list(request.caller)).map(({ preflight: _preflight, ...summary }) => summary),
  }));

  app.get('/datasets/:id', { schema: { params: DatasetParams, response: { 200: DatasetRecord } } }, async (request) =>
    datasets.require(request.caller, request.params.id),
  );

  app.delete('/datasets/:id', { schema: { params: DatasetParams } }, async (request, reply) => {
    const record = await datasets.require(request.caller, request.params.id);
    const users = await jobs.openJobsOnDataset(record.id);
    if (users.length)
      throw new ConflictError(`dataset ${record.id} is in use by ${users.length} queued or running job(s)`, { jobs: users });
    await datasets.remove(record);
    return reply.code(204).send();
  });
};
export default datasetsRoutes;
