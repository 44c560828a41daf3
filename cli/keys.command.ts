import { parseArgs } from 'node:util';
import { ApiKeys } from '../common/api-keys.js';
import { createLogger } from '../common/logger.js';
import { redisConnection, whenReady } from '../common/redis-connection.js';
import { loadConfig } from '../schemas/config.js';
import { UsageError } from './usage.js';

export const KEYS_USAGE = `retrain keys create --owner NAME     prints a new key once (only its hash is kept)
       retrain keys list                    ids, owners and dates of the keys
       retrain keys revoke ID               the key stops working at once`;

/** API keys, kept in the service's Redis (REDIS_URL, QUEUE_PREFIX): run it where the API's environment is. */
export async function keys(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { owner: { type: 'string' } }, allowPositionals: true });
  const [action, ...rest] = positionals;
  const owner = values.owner;
  if (action === 'create' && (!owner || rest.length)) throw new UsageError('keys create needs --owner NAME');
  if (action === 'revoke' && rest.length !== 1) throw new UsageError('keys revoke needs the id of one key');
  if (action === 'list' && rest.length) throw new UsageError('keys list takes no arguments');
  if (!['create', 'list', 'revoke'].includes(action))
    throw new UsageError(action ? `unknown keys action ${action}` : 'keys needs an action');

  const config = loadConfig();
  const redis = redisConnection(config, 'producer', createLogger('cli', 'silent'));
  try {
    await whenReady(redis, 5000);
    const apiKeys = new ApiKeys(redis, config.QUEUE_PREFIX);
    if (action === 'create' && owner) {
      const created = await apiKeys.create(owner).catch((error: Error) => {
        throw new UsageError(`--owner: ${error.message.replace(/^owner: /, '')}`);
      });
      process.stdout.write(`${JSON.stringify(created)}\n`);
      process.stderr.write('retrain: store the key now; it cannot be shown again\n');
    } else if (action === 'list') {
      for (const key of await apiKeys.list()) process.stdout.write(`${JSON.stringify(key)}\n`);
    } else if (!(await apiKeys.revoke(rest[0]))) {
      throw new Error(`no key with id ${rest[0]}`);
    }
  } finally {
    redis.disconnect();
  }
}
