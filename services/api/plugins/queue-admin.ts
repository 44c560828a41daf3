import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import { QueueName, type Queues } from '../../../common/queue-facade.js';
import { guardAdmin, type AuthMode } from './auth.js';

const QUEUE_ADMIN_PATH = '/admin/queues';
/** bull-board's page: its own scripts, inline styles, IBM Plex from Google Fonts, a <base> under its path. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
  "font-src 'self' https://fonts.gstatic.com",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * bull-board at /admin/queues for operators: every queue's jobs by state, their data, progress, logs and
 * failures. Read-only: cancelling and removing go through the API, which also removes what a job kept.
 */
export async function registerQueueAdmin(
  app: FastifyInstance,
  { queues, mode, adminKey }: { queues: Queues; mode: AuthMode; adminKey: string | undefined },
) {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_ADMIN_PATH);
  createBullBoard({
    queues: Object.values(QueueName).map((name) => new BullMQAdapter(queues.get(name), { readOnlyMode: true })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'retrain queues' } },
  });
  await app.register(
    async (scope) => {
      guardAdmin(scope, mode, adminKey, { browser: true });
      scope.addHook('onSend', async (_request, reply) => {
        reply.header('content-security-policy', CONTENT_SECURITY_POLICY).header('x-content-type-options', 'nosniff');
      });
      await scope.register(serverAdapter.registerPlugin());
    },
    { prefix: QUEUE_ADMIN_PATH },
  );
}
