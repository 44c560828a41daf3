import { TooLargeError } from '../../common/errors.js';
import { redisKeys } from '../../common/redis-keys.js';
import { type RedisClient } from '../../common/redis-connection.js';
import type { Caller } from '../../schemas/auth.js';

/** Marks an owner's ledger as holding every upload of theirs (it is built from their records once). */
const COMPLETE = '.complete';
const PENDING = 'pending:';
/**
 * An upload deleted while the ledger is not complete: the build that may have read its record before the
 * delete must not add it back. The build drops these marks as it completes the ledger (in one script), so
 * a complete ledger holds none.
 */
const DELETED = 'deleted:';
/** Uploads a ledger's build adds per script call. */
const BUILD_PART = 1000;
/**
 * A reservation lapses after this (its process died): longer than unpacking, checking and recording
 * the largest upload, or generating the largest synthetic set, take.
 */
const RESERVATION_MS = 3 * 3600_000;

/**
 * Sums the ledger (uploads, and reservations that have not lapsed, dropping those that have) and adds
 * the reservation only if the sum stays within the quota, in one step: concurrent uploads cannot
 * both slip under it. KEYS[1] ledger; ARGV: id, bytes, quota, now, lapses at. Returns {reserved, held}.
 */
const RESERVE = `
local now = tonumber(ARGV[4])
local held = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if string.sub(name, 1, ${PENDING.length}) == '${PENDING}' then
    local bytes, lapses = string.match(value, '^(%d+):(%d+)$')
    if bytes == nil or tonumber(lapses) < now then
      redis.call('HDEL', KEYS[1], name)
    elseif name ~= '${PENDING}' .. ARGV[1] then
      held = held + tonumber(bytes)
    end
  elseif name ~= '${COMPLETE}' then
    held = held + (tonumber(value) or 0)
  end
end
if held + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return {0, held} end
redis.call('HSET', KEYS[1], '${PENDING}' .. ARGV[1], ARGV[2] .. ':' .. ARGV[5])
return {1, held}
`;

/**
 * Adds uploads read from the records (ARGV[2..]: id, bytes, ...) but those deleted since; with ARGV[1] '1'
 * (the last of them), completes the ledger. KEYS[1] ledger.
 */
const BUILD = `
if redis.call('HEXISTS', KEYS[1], '${COMPLETE}') == 1 then return 0 end
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], '${DELETED}' .. ARGV[i]) == 0 then redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if ARGV[1] ~= '1' then return 0 end
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(name, 1, ${DELETED.length}) == '${DELETED}' then redis.call('HDEL', KEYS[1], name) end
end
redis.call('HSET', KEYS[1], '${COMPLETE}', '1')
return 1
`;

/** Frees what ARGV[1] held or reserved; until the ledger is complete, remembers it was deleted. KEYS[1] ledger. */
const RELEASE = `
redis.call('HDEL', KEYS[1], ARGV[1], '${PENDING}' .. ARGV[1])
if redis.call('HEXISTS', KEYS[1], '${COMPLETE}') == 0 then redis.call('HSET', KEYS[1], '${DELETED}' .. ARGV[1], '1') end
`;

/** An owner's uploads as their records say (for building the ledger of an owner who uploaded before it existed). */
export type OwnerUploads = (owner: string) => Promise<Array<{ id: string; unpackedBytes: number }>>;

/**
 * Each owner's dataset quota, counted in Redis (one hash per owner) so that every API process sees
 * every reservation: the bytes an upload will unpack to are reserved before it is written, and a
 * synthetic set's while a preflight keeps it. The admin is not counted against one.
 */
export class DatasetQuota {
  private readonly keys;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    readonly quotaBytes: number,
    private readonly uploadsOf: OwnerUploads,
  ) {
    this.keys = redisKeys(prefix);
  }

  /** Bytes the owner's uploads and reservations hold now. */
  async held(owner: string): Promise<number> {
    await this.complete(owner);
    const now = Date.now();
    let held = 0;
    for (const [name, value] of Object.entries(await this.redis.hgetall(this.keys.datasetBytes(owner)))) {
      if (name === COMPLETE) continue;
      const [bytes, lapses] = value.split(':').map(Number);
      if (!name.startsWith(PENDING) || lapses >= now) held += bytes;
    }
    return held;
  }

  /** Refuses (413) an owner with no room left, before anything of theirs is received. */
  async requireRoom(caller: Caller): Promise<void> {
    if (caller.admin) return;
    const held = await this.held(caller.owner);
    if (held >= this.quotaBytes)
      throw new TooLargeError(`your datasets hold ${held} bytes unpacked and your quota is ${this.quotaBytes}; delete one first`);
  }

  /** Reserves `bytes` for `id` (an upload, a preflight) within the caller's quota, or refuses (413) naming it. */
  async reserve(caller: Caller, id: string, bytes: number, what: string): Promise<void> {
    if (caller.admin) return;
    await this.complete(caller.owner);
    const now = Date.now();
    const [reserved, held] = (await this.redis.eval(
      RESERVE,
      1,
      this.keys.datasetBytes(caller.owner),
      id,
      String(bytes),
      String(this.quotaBytes),
      String(now),
      String(now + RESERVATION_MS),
    )) as [number, number];
    if (!reserved)
      throw new TooLargeError(
        `${what} needs ${bytes} bytes; your datasets hold ${held} of your quota of ${this.quotaBytes} (QUOTA_DATASET_BYTES); delete one first`,
      );
  }

  /** The upload is recorded: its reservation becomes what it holds. */
  async commit(owner: string, id: string, bytes: number): Promise<void> {
    const key = this.keys.datasetBytes(owner);
    await this.redis.multi().hset(key, id, String(bytes)).hdel(key, `${PENDING}${id}`).exec();
  }

  /** What `id` held or reserved is free again (a refused or deleted upload, a finished preflight). */
  async release(owner: string, id: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.keys.datasetBytes(owner), id);
  }

  /**
   * Builds an owner's ledger from their records the first time it is needed (uploads of earlier releases).
   * An upload deleted after its record was read stays out: its delete left a mark the build reads.
   */
  private async complete(owner: string): Promise<void> {
    const key = this.keys.datasetBytes(owner);
    if (await this.redis.hexists(key, COMPLETE)) return;
    const uploads = await this.uploadsOf(owner);
    // In parts: one script call's arguments stay small for an owner with many uploads. A delete between two
    // parts removes what an earlier one added, as on a complete ledger.
    for (let start = 0; ; start += BUILD_PART) {
      const last = start + BUILD_PART >= uploads.length;
      const part = uploads.slice(start, start + BUILD_PART).flatMap(({ id, unpackedBytes }) => [id, String(unpackedBytes)]);
      await this.redis.eval(BUILD, 1, key, last ? '1' : '0', ...part);
      if (last) return;
    }
  }
}
