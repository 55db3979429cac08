import { metrics, type Logger } from '@shoal/observability';

/**
 * Transient failures are retried in place; one that outlasts its deadline
 * (`SHOAL_TRANSIENT_ESCALATE_SECONDS`) is escalated, never silent: an error log with the
 * partition's coordinates, `shoal_transient_escalated{group,topic,partition}` set to 1, and the
 * consumer's readiness check failing (`/readyz`), until the partition applies a chunk again.
 *
 * Blocks on nothing; throws nothing.
 * Rebalance: a partition this member no longer owns is forgotten (its new owner escalates it if
 * it is still stuck there).
 */

interface Failing {
  topic: string;
  partition: number;
  /** The offset the retries start from. */
  offset: number;
  lastError: unknown;
  since: number;
  escalated: boolean;
  timer: NodeJS.Timeout;
}

export class TransientEscalation {
  private readonly failing = new Map<string, Failing>();

  constructor(
    private readonly group: string,
    private readonly deadlineMs: number,
    private readonly logger: Logger,
  ) {}

  /** A chunk of the partition failed transiently (again); its clock starts at the first failure. */
  failed(topic: string, partition: number, offset: number, error: unknown): void {
    const current = this.failing.get(key(topic, partition));
    if (current) {
      current.offset = offset;
      current.lastError = error;
      return;
    }
    const entry: Failing = {
      topic,
      partition,
      offset,
      lastError: error,
      since: Date.now(),
      escalated: false,
      timer: setTimeout(() => this.escalate(entry), this.deadlineMs).unref(),
    };
    this.failing.set(key(topic, partition), entry);
  }

  /** The partition applied a chunk: whatever failed has passed. */
  recovered(topic: string, partition: number): void {
    const entry = this.failing.get(key(topic, partition));
    if (!entry) return;
    this.forget(entry);
    if (entry.escalated)
      this.logger.warn(
        { topic, partition, offset: entry.offset, seconds: (Date.now() - entry.since) / 1000 },
        'escalated transient failure passed; partition moving again',
      );
  }

  /** Keeps only the partitions still owned (after a rebalance). */
  retain(owned: (topic: string, partition: number) => boolean): void {
    for (const entry of this.failing.values())
      if (!owned(entry.topic, entry.partition)) this.forget(entry);
  }

  /** One line per escalated partition, for the readiness check. */
  problems(): string[] {
    return [...this.failing.values()]
      .filter((e) => e.escalated)
      .map(
        (e) =>
          `${e.topic}[${e.partition}] stuck at offset ${e.offset} on a transient failure since ${new Date(e.since).toISOString()}: ${(e.lastError as Error)?.message ?? String(e.lastError)}`,
      );
  }

  stop(): void {
    for (const entry of this.failing.values()) clearTimeout(entry.timer);
  }

  private escalate(entry: Failing): void {
    entry.escalated = true;
    metrics.transientEscalated.set(this.labels(entry), 1);
    this.logger.error(
      {
        group: this.group,
        topic: entry.topic,
        partition: entry.partition,
        offset: entry.offset,
        since: new Date(entry.since).toISOString(),
        err: entry.lastError,
      },
      `transient failure lasting more than ${this.deadlineMs / 1000} s; partition stuck, retrying`,
    );
  }

  private forget(entry: Failing): void {
    clearTimeout(entry.timer);
    this.failing.delete(key(entry.topic, entry.partition));
    if (entry.escalated) metrics.transientEscalated.set(this.labels(entry), 0);
  }

  private labels(entry: Failing) {
    return { group: this.group, topic: entry.topic, partition: String(entry.partition) };
  }
}

const key = (topic: string, partition: number) => `${topic}:${partition}`;
