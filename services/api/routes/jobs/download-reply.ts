import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Converting, Download } from '../../../jobs/checkpoint-downloads.js';

/**
 * A saved model's download: 202 with Retry-After while a format made on first request is being made,
 * 304 for a matching If-None-Match, else the file with its ETag.
 */
export async function sendDownload(request: FastifyRequest, reply: FastifyReply, download: Download | Converting, format: string) {
  if ('converting' in download)
    return reply
      .code(202)
      .header('retry-after', download.retryAfterSeconds)
      .header('location', request.url)
      .send({
        state: 'converting',
        detail: `converting to ${format} on first request; ask again after Retry-After seconds`,
        retryAfterSeconds: download.retryAfterSeconds,
      });
  const etag = `"${download.etag}"`;
  reply.header('etag', etag).header('cache-control', 'private, max-age=0, must-revalidate');
  if (request.headers['if-none-match'] === etag) return reply.code(304).send(null);
  return reply
    .header('content-type', download.contentType)
    .header('content-length', download.size)
    .header('content-disposition', `attachment; filename="${download.filename}"`)
    .send(await download.open());
}
