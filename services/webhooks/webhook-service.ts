import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { InvalidInputError, NotFoundError, QuotaExceededError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { checkedAddress, ForbiddenAddressError } from '../../common/public-address.js';
import type { RedisClient } from '../../common/redis-connection.js';
import { redisKeys } from '../../common/redis-keys.js';
import type { Caller } from '../../schemas/auth.js';
import {
  DeliveryPayload,
  type Delivery,
  type Webhook,
  type WebhookEventType,
  type WebhookSpec,
  type WebhookWithDeliveries,
} from '../../schemas/webhook.js';

const QUEUE = 'webhooks';
const TIMEOUT_MS = 5000;
const ATTEMPTS = 5;
/** How long closing waits for the delivery worker's connections to be ready (they never are during a Redis outage). */
const CLOSE_READY_WAIT_MS = 2000;
const DELIVERIES_KEPT = 100;
/** The most of a response's body read (and then dropped): a receiver cannot make a delivery hold memory. */
const RESPONSE_BYTES_READ = 64 * 1024;

interface WebhookRecord extends WebhookSpec {
  id: string;
  secret: string;
  createdAt: string;
}

export interface WebhookOptions {
  prefix: string;
  allowPrivate: boolean;
  /** The first retry's delay; each next one doubles it. */
  retryDelayMs: number;
  maxPerOwner: number;
}

/** `Retrain-Signature`: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">, as payment and code-hosting APIs sign theirs. */
export function signature(secret: string, body: string, at = Math.floor(Date.now() / 1000)): string {
  return `t=${at},v1=${createHmac('sha256', secret).update(`${at}.${body}`).digest('hex')}`;
}

/** POSTs `body` to `url` at the address checked for it; redirects are answers, never followed. */
function post(url: URL, target: { address: string; family: number }, headers: Record<string, string>, body: string): Promise<number> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = client.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: TIMEOUT_MS,
        lookup: (_host, _options, callback) => callback(null, target.address, target.family),
      },
      (response) => {
        let read = 0;
        response.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > RESPONSE_BYTES_READ) response.destroy();
        });
        response.on('close', () => resolve(response.statusCode ?? 0));
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer in ${TIMEOUT_MS / 1000} s`)));
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * Webhooks: each owner's receivers (in Redis, with a secret shown once), and the notices sent to them
 * through a BullMQ queue of deliveries (retried with exponential backoff, each try in a log).
 */
export class WebhookService {
  private readonly keys;
  private readonly queue: Queue<DeliveryPayload>;
  private worker: Worker<DeliveryPayload> | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: WebhookOptions,
    private readonly log: Pick<Logger, 'warn' | 'info'>,
  ) {
    this.keys = redisKeys(options.prefix);
    this.queue = new Queue(QUEUE, { connection: redis, prefix: options.prefix });
  }

  private async records(owner: string): Promise<WebhookRecord[]> {
    return Object.values(await this.redis.hgetall(this.keys.webhooks(owner))).map((entry) => JSON.parse(entry) as WebhookRecord);
  }

  private shown({ id, url, events, createdAt }: WebhookRecord): Webhook {
    return { id, url, events, createdAt, links: { self: `/v1/webhooks/${id}` } };
  }

  async create(caller: Caller, spec: WebhookSpec): Promise<Webhook & { secret: string }> {
    await checkedAddress(new URL(spec.url).hostname, this.options.allowPrivate).catch((error: Error) => {
      throw InvalidInputError.field('url', error instanceof ForbiddenAddressError ? error.message : `cannot resolve: ${error.message}`);
    });
    if ((await this.redis.hlen(this.keys.webhooks(caller.owner))) >= this.options.maxPerOwner)
      throw new QuotaExceededError(`you have ${this.options.maxPerOwner} webhooks, the most an owner may (WEBHOOK_MAX_PER_OWNER)`, {
        quota: 'webhooks',
        limit: this.options.maxPerOwner,
      });
    const record: WebhookRecord = {
      ...spec,
      id: randomUUID(),
      secret: `whsec_${randomBytes(24).toString('base64url')}`,
      createdAt: new Date().toISOString(),
    };
    await this.redis.hset(this.keys.webhooks(caller.owner), record.id, JSON.stringify(record));
    return { ...this.shown(record), secret: record.secret };
  }

  async list(caller: Caller): Promise<{ items: Webhook[] }> {
    const records = await this.records(caller.owner);
    return { items: records.sort((a, b) => a.createdAt.localeCompare(b.createdAt)).map((record) => this.shown(record)) };
  }

  private async require(owner: string, id: string): Promise<WebhookRecord> {
    const entry = await this.redis.hget(this.keys.webhooks(owner), id);
    if (!entry) throw new NotFoundError(`no webhook with id ${id}`);
    return JSON.parse(entry) as WebhookRecord;
  }

  async describe(caller: Caller, id: string): Promise<WebhookWithDeliveries> {
    const record = await this.require(caller.owner, id);
    const deliveries = (await this.redis.lrange(this.keys.webhookDeliveries(id), 0, -1)).map((entry) => JSON.parse(entry) as Delivery);
    return { ...this.shown(record), deliveries };
  }

  async remove(caller: Caller, id: string): Promise<void> {
    await this.require(caller.owner, id);
    await this.redis.multi().hdel(this.keys.webhooks(caller.owner), id).del(this.keys.webhookDeliveries(id)).exec();
  }

  /**
   * Queues a notice to each of the owner's webhooks that asked for `type`. `key` names the event: API
   * processes that all see it queue one delivery (BullMQ keeps the first job of an id).
   */
  async notify(owner: string, type: WebhookEventType, key: string, data: Record<string, unknown>): Promise<void> {
    for (const webhook of await this.records(owner)) {
      if (!webhook.events.includes(type)) continue;
      const delivery = `${webhook.id}:${type}:${key}`;
      const body = { id: delivery, type, createdAt: new Date().toISOString(), data };
      await this.queue.add(
        type,
        { owner, webhook: webhook.id, body },
        {
          jobId: delivery,
          attempts: ATTEMPTS,
          backoff: { type: 'exponential', delay: this.options.retryDelayMs },
          removeOnComplete: { age: 24 * 3600 },
          removeOnFail: { age: 7 * 24 * 3600 },
        },
      );
    }
  }

  private async record(webhook: string, delivery: Delivery): Promise<void> {
    await this.redis
      .multi()
      .lpush(this.keys.webhookDeliveries(webhook), JSON.stringify(delivery))
      .ltrim(this.keys.webhookDeliveries(webhook), 0, DELIVERIES_KEPT - 1)
      .exec();
  }

  /** One try of a delivery: 2xx delivers; a redirect or a refused address fails for good; anything else is retried. */
  private async deliver(job: Job<DeliveryPayload>): Promise<void> {
    const { owner, webhook: id, body } = DeliveryPayload.parse(job.data);
    const webhook = await this.require(owner, id).catch(() => null);
    if (!webhook) return;
    const attempt = job.attemptsMade + 1;
    const entry = (outcome: Delivery['outcome'], responseStatus: number | null, error: string | null): Delivery => ({
      delivery: body.id,
      event: body.type,
      attempt,
      outcome,
      responseStatus,
      error,
      at: new Date().toISOString(),
    });
    const payload = JSON.stringify(body);
    const url = new URL(webhook.url);
    let status: number;
    try {
      const target = await checkedAddress(url.hostname, this.options.allowPrivate);
      const headers = { 'retrain-event': body.type, 'retrain-delivery': body.id, 'retrain-signature': signature(webhook.secret, payload) };
      status = await post(url, target, headers, payload);
    } catch (error) {
      const message = (error as Error).message;
      const final = error instanceof ForbiddenAddressError || attempt >= ATTEMPTS;
      await this.record(id, entry(final ? 'failed' : 'retrying', null, message));
      throw final ? new UnrecoverableError(message) : error;
    }
    if (status >= 200 && status < 300) return this.record(id, entry('delivered', status, null));
    const redirect = status >= 300 && status < 400;
    const final = redirect || attempt >= ATTEMPTS;
    const why = redirect ? `answered ${status}: redirects are not followed` : `answered ${status}`;
    await this.record(id, entry(final ? 'failed' : 'retrying', status, why));
    throw final ? new UnrecoverableError(why) : new Error(why);
  }

  /** Delivers queued notices from this process (every API process does; each delivery goes to one). */
  startDelivering(connection: RedisClient): void {
    this.worker = new Worker<DeliveryPayload>(QUEUE, (job) => this.deliver(job), {
      connection,
      prefix: this.options.prefix,
      concurrency: 4,
    });
    this.worker.on('error', (error) => this.log.warn({ err: error.message }, 'webhook deliveries'));
  }

  async close(): Promise<void> {
    // A worker closed while its blocking connection still initialises rejects that init's commands with
    // no one listening (an unhandled "Connection is closed"): let it get ready first, but not wait on an outage.
    const ready = this.worker?.waitUntilReady().catch(() => undefined);
    await Promise.race([ready, sleep(CLOSE_READY_WAIT_MS, undefined, { ref: false })]);
    await this.worker?.close();
    await this.queue.close();
  }
}
