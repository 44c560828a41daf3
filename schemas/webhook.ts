import { z } from 'zod';

export const WebhookEventType = z.enum(['job.completed', 'job.failed', 'job.cancelled', 'sweep.completed']);
export type WebhookEventType = z.infer<typeof WebhookEventType>;

export const WebhookSpec = z.strictObject({
  url: z
    .url({ protocol: /^https?$/, hostname: z.regexes.hostname })
    .max(2048)
    .describe('http(s); loopback, private and link-local addresses are refused unless WEBHOOK_ALLOW_PRIVATE=true'),
  events: z
    .array(WebhookEventType)
    .min(1)
    .refine((events) => new Set(events).size === events.length, 'events repeat'),
});
export type WebhookSpec = z.infer<typeof WebhookSpec>;

export const Webhook = z.object({
  id: z.uuid(),
  url: z.string(),
  events: z.array(WebhookEventType),
  createdAt: z.string(),
  links: z.record(z.string(), z.string()),
});
export type Webhook = z.infer<typeof Webhook>;

export const WebhookCreated = Webhook.extend({
  secret: z
    .string()
    .describe(
      'Shown once: verify each delivery with it. Retrain-Signature is t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">; ' +
        'refuse a t older than a few minutes (a replay)',
    ),
});

export const Delivery = z.object({
  delivery: z.string().describe('The Retrain-Delivery header: one per event, the same on every try'),
  event: WebhookEventType,
  attempt: z.number().int(),
  outcome: z.enum(['delivered', 'failed', 'retrying']),
  responseStatus: z.number().int().nullable(),
  error: z.string().nullable(),
  at: z.string(),
});
export type Delivery = z.infer<typeof Delivery>;

export const WebhookWithDeliveries = Webhook.extend({ deliveries: z.array(Delivery).describe('Newest first, the last 100') });
export type WebhookWithDeliveries = z.infer<typeof WebhookWithDeliveries>;

/** What a delivery POSTs: the event and the resource it is about, as GET would answer it then. */
export const WebhookBody = z.object({
  id: z.string(),
  type: WebhookEventType,
  createdAt: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type WebhookBody = z.infer<typeof WebhookBody>;

/** A delivery as queued (BullMQ job data). */
export const DeliveryPayload = z.object({
  owner: z.string(),
  webhook: z.uuid(),
  body: WebhookBody,
});
export type DeliveryPayload = z.infer<typeof DeliveryPayload>;
