import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ApiKeyRecord, Owner, RESERVED_OWNERS } from '../schemas/auth.js';
import { InvalidInputError } from './errors.js';
import { redisKeys } from './redis-keys.js';
import { type RedisClient } from './redis-connection.js';

const KEY_PATTERN = /^rtk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** True when `presented` is `expected`, in time that does not depend on where they differ. */
export function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}

export interface CreatedKey {
  id: string;
  owner: string;
  createdAt: string;
  /** Shown once; only its hash is stored. */
  key: string;
}

/**
 * API keys in one Redis hash: id -> owner and the key's SHA-256 (the keys are 256 random bits, so a
 * fast hash is enough). Looked up on every request, so a revoked key stops working at once.
 */
export class ApiKeys {
  private readonly hash: string;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.hash = redisKeys(prefix).apiKeys;
  }

  async create(owner: string): Promise<CreatedKey> {
    const parsed = Owner.safeParse(owner);
    if (!parsed.success) throw InvalidInputError.field('owner', parsed.error.issues[0].message);
    if (RESERVED_OWNERS.includes(owner)) throw InvalidInputError.field('owner', `"${owner}" is reserved`);
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const key = `rtk_${id}_${secret}`;
    const record: ApiKeyRecord = { id, owner, sha256: sha256(secret).toString('hex'), createdAt: new Date().toISOString() };
    await this.redis.hset(this.hash, id, JSON.stringify(record));
    return { id, owner, createdAt: record.createdAt, key };
  }

  /** The id and owner of a valid, unrevoked key; null for anything else. */
  async verify(key: string): Promise<{ id: string; owner: string } | null> {
    const match = KEY_PATTERN.exec(key);
    if (!match) return null;
    const stored = await this.redis.hget(this.hash, match[1]);
    if (!stored) return null;
    const record = ApiKeyRecord.parse(JSON.parse(stored));
    return timingSafeEqual(sha256(match[2]), Buffer.from(record.sha256, 'hex')) ? { id: record.id, owner: record.owner } : null;
  }

  /** False when no key has this id. */
  async revoke(id: string): Promise<boolean> {
    return (await this.redis.hdel(this.hash, id)) === 1;
  }

  async list(): Promise<Omit<ApiKeyRecord, 'sha256'>[]> {
    const all = await this.redis.hgetall(this.hash);
    return Object.values(all)
      .map((value) => {
        const { sha256: _hash, ...rest } = ApiKeyRecord.parse(JSON.parse(value));
        return rest;
      })
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }
}
