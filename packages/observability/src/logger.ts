import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout; `LOG_LEVEL` picks the level (default info). */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: service, level, base: { service, pid: process.pid } });
}
