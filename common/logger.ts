import { pino, type Logger } from 'pino';

export type { Logger };
export type Role = 'api' | 'worker' | 'processor' | 'start' | 'cli';

/**
 * One JSON log format for every process: pino, with the process role on every line. Written
 * synchronously: an asynchronous write still in flight at process.exit lands after the lines flushed
 * at exit, so a shutdown's lines came out of order.
 */
export function createLogger(role: Role, level: string): Logger {
  return pino(
    { level, base: { role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
