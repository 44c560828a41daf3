import { pino, type Logger } from 'pino';

export type { Logger };
export type Role = 'api' | 'worker' | 'processor' | 'start' | 'cli';

/** One JSON log format for every process: pino, with the process role on every line. */
export function createLogger(role: Role, level: string): Logger {
  return pino({ level, base: { role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
