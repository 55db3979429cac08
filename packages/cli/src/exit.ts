import { ConfigError } from '@shoal/config';

/**
 * The exit codes every `shoal` command documents (shared/CLI.md), and the one mapping from a
 * thrown error to its code. Dependency trouble is decided by the runtime's `classify`, the same
 * facts (SQLSTATE class, kafkajs `retriable`, socket codes) the consumers retry on; it is loaded
 * only when something failed, since the runtime takes seconds to import.
 */
export const exitCodes = {
  ok: 0,
  failed: 1,
  usage: 2,
  refused: 3,
  dependency: 4,
  config: 78,
  interrupted: 130,
} as const;

export const exitCodesHelp = `Exit codes:
  0    ok
  1    failed
  2    bad usage (the message names the option)
  3    done, but some records were refused, invalid or different
  4    a dependency (Kafka, PostgreSQL) is down or not set up for this
  78   bad configuration (an environment variable)
  130  interrupted`;

/** Wrong options or option values: exit 2 with the message. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A dependency that answers but is not set up for what was asked (e.g. a service not migrated): exit 4. */
export class NotSetUpError extends Error {
  override name = 'NotSetUpError';
}

export async function exitCodeOf(error: unknown): Promise<number> {
  if (error instanceof UsageError) return exitCodes.usage;
  if (error instanceof ConfigError) return exitCodes.config;
  if (error instanceof NotSetUpError) return exitCodes.dependency;
  const { classify } = await import('@shoal/kafka-runtime');
  return classify(error).kind === 'transient' ? exitCodes.dependency : exitCodes.failed;
}
