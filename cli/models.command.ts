import { call, callJson, one, parseCommand, print } from './client.js';
import { UsageError } from './usage.js';

export const MODELS_USAGE = `retrain models set NAME JOB [--checkpoint final|best|N]   point the alias NAME at a job's saved model
       retrain models list                                     your aliases
       retrain models get NAME                                 an alias and its history
       retrain models delete NAME                              remove an alias
       (predict through an alias: retrain predict --model NAME IMAGE...)`;

export async function models(argv: string[]): Promise<void> {
  const { service, values, positionals } = parseCommand(argv, { checkpoint: { type: 'string' } });
  const [action, ...rest] = positionals;
  switch (action) {
    case 'set': {
      if (rest.length !== 2) throw new UsageError('models set needs NAME and JOB');
      const [name, job] = rest;
      const checkpoint =
        values.checkpoint === undefined ? 'final' : /^\d+$/.test(values.checkpoint) ? Number(values.checkpoint) : values.checkpoint;
      return print(
        await callJson(service, `/v1/models/${encodeURIComponent(name)}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ job, checkpoint }),
        }),
      );
    }
    case 'list':
      return print(await callJson(service, '/v1/models'));
    case 'get':
      return print(await callJson(service, `/v1/models/${encodeURIComponent(one(rest, 'an alias name'))}`));
    case 'delete':
      await call(service, `/v1/models/${encodeURIComponent(one(rest, 'an alias name'))}`, { method: 'DELETE' });
      return;
    default:
      throw new UsageError(action ? `unknown models action ${action}` : 'models needs an action');
  }
}
