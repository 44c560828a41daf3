import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Webhook, WebhookCreated, WebhookSpec, WebhookWithDeliveries } from '../../../../schemas/webhook.js';
import type { WebhookService } from '../../../webhooks/webhook-service.js';

const WebhookParams = z.object({ id: z.string().describe('The webhook id (a UUID)') });

/** Webhooks: an owner's receivers of job and sweep notices, and the log of each one's deliveries. */
const webhooksRoutes: FastifyPluginAsyncZod<{ webhooks: WebhookService }> = async (app, { webhooks }) => {
  app.post('/webhooks', { schema: { body: WebhookSpec, response: { 201: WebhookCreated } } }, async (request, reply) => {
    const created = await webhooks.create(request.caller, request.body);
    return reply.code(201).header('location', created.links.self).send(created);
  });

  app.get('/webhooks', { schema: { response: { 200: z.object({ items: z.array(Webhook) }) } } }, async (request) =>
    webhooks.list(request.caller),
  );

  app.get('/webhooks/:id', { schema: { params: WebhookParams, response: { 200: WebhookWithDeliveries } } }, async (request) =>
    webhooks.describe(request.caller, request.params.id),
  );

  app.delete('/webhooks/:id', { schema: { params: WebhookParams, response: { 204: z.null() } } }, async (request, reply) => {
    await webhooks.remove(request.caller, request.params.id);
    return reply.code(204).send(null);
  });
};
export default webhooksRoutes;
