import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TooLargeError } from '../../../../common/errors.js';
import { DatasetRecord, DatasetSpec, PreflightOptions, PreflightReport } from '../../../../schemas/dataset.js';
import type { ApiServices } from '../../composition.js';
import { allowLongWork } from '../../long-work.js';
import { drainBody, HttpProblem } from '../../problem.js';

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

/** Dataset uploads (tar.gz or zip of class folders) and preflight reports, without training. */
const datasetsRoutes: FastifyPluginAsyncZod<Pick<ApiServices, 'datasets' | 'preflights' | 'uploadSlots' | 'checkUpload'>> = async (
  app,
  { datasets, preflights, uploadSlots, checkUpload },
) => {
  // Archives are streamed to disk as they arrive, never buffered: hand the route the raw stream.
  app.addContentTypeParser(Object.keys(ARCHIVE_TYPES), (_request, payload, done) => done(null, payload));
  app.addHook('onError', async (request, reply, error) => drainBody(request, reply, error));

  app.post('/datasets/preflight', { schema: { body: PreflightBody, response: { 200: PreflightReport } } }, async (request) => {
    allowLongWork(request);
    const { dataset, ...options } = request.body;
    return preflights.check(request.caller, dataset, options);
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
    if (declared > datasets.limits.maxArchiveBytes)
      throw new TooLargeError(`the archive is ${declared} bytes; the limit is ${datasets.limits.maxArchiveBytes}`);
    const release = uploadSlots.acquire(request.caller);
    allowLongWork(request);
    const record = await datasets
      .create(request.caller, request.body as Readable, format, request.query.name ?? `upload.${format}`, (id) =>
        checkUpload(id, request.caller),
      )
      .finally(release);
    return reply.code(201).header('location', `/v1/datasets/${record.id}`).send(record);
  });

  app.get('/datasets', { schema: { response: { 200: z.object({ items: z.array(DatasetSummary) }) } } }, async (request) => ({
    items: (await datasets.list(request.caller)).map(({ preflight: _preflight, ...summary }) => summary),
  }));

  app.get('/datasets/:id', { schema: { params: DatasetParams, response: { 200: DatasetRecord } } }, async (request) =>
    datasets.require(request.caller, request.params.id),
  );

  app.delete('/datasets/:id', { schema: { params: DatasetParams } }, async (request, reply) => {
    await datasets.delete(request.caller, request.params.id);
    return reply.code(204).send();
  });
};
export default datasetsRoutes;
