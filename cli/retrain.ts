import { UsageError } from './usage.js';

const USAGE = `retrain jobs ...       submit, follow, list, cancel and download jobs
       retrain sweeps ...     hyper-parameter sweeps: submit, follow, list, cancel
       retrain models ...     model aliases: a name for a job's saved model
       retrain datasets ...   upload and manage datasets
       retrain predict ...    top-k classes of images by a trained job
       retrain summary ...    the model a spec would build, without the service
       retrain weights ...    ImageNet and other start weights (in the service's artifact store)
       retrain keys ...       API keys (in the service's Redis)
       retrain help [COMMAND] this text, or a command's`;

/** Each command loads only what it needs: `keys` never starts a tensor runtime. */
const COMMANDS: Record<string, { usage: () => Promise<string>; run: (argv: string[]) => Promise<void> }> = {
  summary: {
    usage: async () => (await import('./summary.command.js')).SUMMARY_USAGE,
    run: async (argv) => (await import('./summary.command.js')).summary(argv),
  },
  jobs: {
    usage: async () => (await import('./jobs.command.js')).JOBS_USAGE,
    run: async (argv) => (await import('./jobs.command.js')).jobs(argv),
  },
  sweeps: {
    usage: async () => (await import('./sweeps.command.js')).SWEEPS_USAGE,
    run: async (argv) => (await import('./sweeps.command.js')).sweeps(argv),
  },
  models: {
    usage: async () => (await import('./models.command.js')).MODELS_USAGE,
    run: async (argv) => (await import('./models.command.js')).models(argv),
  },
  datasets: {
    usage: async () => (await import('./datasets.command.js')).DATASETS_USAGE,
    run: async (argv) => (await import('./datasets.command.js')).datasets(argv),
  },
  predict: {
    usage: async () => (await import('./predict.command.js')).PREDICT_USAGE,
    run: async (argv) => (await import('./predict.command.js')).predict(argv),
  },
  keys: {
    usage: async () => (await import('./keys.command.js')).KEYS_USAGE,
    run: async (argv) => (await import('./keys.command.js')).keys(argv),
  },
  weights: {
    usage: async () => (await import('./weights.command.js')).WEIGHTS_USAGE,
    run: async (argv) => (await import('./weights.command.js')).weights(argv),
  },
};

const HELP = new Set(['help', '--help', '-h']);

const [name, ...rest] = process.argv.slice(2);
const command = name ? COMMANDS[name] : undefined;
try {
  // Asked for: the usage on standard output, and success.
  if (HELP.has(name) || (command && HELP.has(rest[0]))) {
    const topic = HELP.has(name) ? COMMANDS[rest[0]] : command;
    if (HELP.has(name) && rest[0] && !topic) throw new UsageError(`unknown command ${rest[0]}`);
    process.stdout.write(`usage: ${topic ? await topic.usage() : USAGE}\n`);
  } else if (!command) {
    throw new UsageError(name ? `unknown command ${name}` : 'no command given');
  } else await command.run(rest);
} catch (error) {
  const usage = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  const text = usage ? `usage: ${command ? await command.usage() : USAGE}\n` : '';
  process.stderr.write(`retrain: ${(error as Error).message}\n${text}`);
  process.exitCode = usage ? 2 : 1;
}
