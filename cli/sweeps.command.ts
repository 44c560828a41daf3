import { readFile } from 'node:fs/promises';
import type { SweepStatus } from '../schemas/sweep.js';
import { callJson, one, parseCommand, print, progressLine, type Service } from './client.js';
import { UsageError } from './usage.js';

export const SWEEPS_USAGE = `retrain sweeps submit SWEEP.json [--watch]   start a sweep (--watch: follow it to its end)
       retrain sweeps list                          your sweeps, newest first
       retrain sweeps get ID                        a sweep: its trials, rungs and best trial
       retrain sweeps watch ID                      follow a sweep to its end; exits 1 unless it completes
       retrain sweeps cancel ID                     stop queuing trials and cancel those in flight
       (RETRAIN_URL, RETRAIN_API_KEY as for jobs)`;

const POLL_MS = 2000;

/** A sweep's state in a line: trials ended of the total, and the best so far. */
function line(sweep: SweepStatus): string {
  const ended = sweep.trials.filter((t) => ['completed', 'stopped_early', 'failed', 'cancelled'].includes(t.state)).length;
  const stopped = sweep.trials.filter((t) => t.state === 'stopped_early').length;
  const best = sweep.best
    ? ` best ${sweep.spec.objective.metric} ${sweep.best.value} (trial ${sweep.best.trial}, epoch ${sweep.best.epoch})`
    : '';
  return `${sweep.state} ${ended}/${sweep.totalTrials} trials ended (${stopped} stopped early)${best}`;
}

/** Polls the sweep until it ends, a line each time something moved; prints the final status. */
async function finish(service: Service, id: string): Promise<void> {
  for (;;) {
    const sweep = await callJson<SweepStatus>(service, `/v1/sweeps/${id}`);
    const text = line(sweep);
    progressLine(text, sweep.totalTrials ? sweep.trials.filter((t) => t.best).length / sweep.totalTrials : null);
    if (sweep.state !== 'running') {
      print(sweep);
      if (sweep.state !== 'completed') process.exitCode = 1;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export async function sweeps(argv: string[]): Promise<void> {
  const { service, values, positionals } = parseCommand(argv, { watch: { type: 'boolean' } });
  const [action, ...rest] = positionals;
  switch (action) {
    case 'submit': {
      const spec = await readFile(one(rest, 'the path of a sweep spec (JSON)'), 'utf8');
      const sweep = await callJson<SweepStatus>(service, '/v1/sweeps', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: spec,
      });
      if (!values.watch) return print(sweep);
      process.stderr.write(`retrain: sweep ${sweep.id}, ${sweep.totalTrials} trials\n`);
      return finish(service, sweep.id);
    }
    case 'list':
      return print(await callJson(service, '/v1/sweeps?limit=100'));
    case 'get':
      return print(await callJson(service, `/v1/sweeps/${one(rest, 'a sweep id')}`));
    case 'watch':
      return finish(service, one(rest, 'a sweep id'));
    case 'cancel':
      return print(await callJson(service, `/v1/sweeps/${one(rest, 'a sweep id')}`, { method: 'DELETE' }));
    default:
      throw new UsageError(action ? `unknown sweeps action ${action}` : 'sweeps needs an action');
  }
}
