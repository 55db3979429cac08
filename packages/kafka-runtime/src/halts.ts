import type { Pool } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import { isHalted } from './store.js';

/**
 * Partitions halted because PostgreSQL's offset does not match the log (see offset-guard.ts). A
 * halted partition stays paused, loudly: an error log naming topic, partition and offsets,
 * `shoal_partition_halted{group,topic,partition}` at 1 and the readiness check failing. Every
 * `checkEveryMs` it asks PostgreSQL whether an operator's reset (`shoal offsets reset`, which
 * clears `halted_at`) let it go; then `resume` seeks to the new offset and resumes it.
 *
 * Blocks on: PostgreSQL, one query per halted partition per check.
 * Throws nothing: a failed check is logged and tried again at the next.
 * Rebalance: a partition this member no longer owns is forgotten; its new owner finds the halt in
 * PostgreSQL on its first chunk and halts it again there.
 */
export class HaltedPartitions {
  private readonly halted = new Map<string, { topic: string; partition: number; reason: string }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly options: {
      group: string;
      pool: Pool;
      logger: Logger;
      checkEveryMs: number;
      resume: (topic: string, partition: number) => Promise<void>;
    },
  ) {
    this.timer = setInterval(() => void this.checkCleared(), options.checkEveryMs).unref();
  }

  halt(topic: string, partition: number, reason: string): void {
    if (this.halted.has(key(topic, partition))) return;
    this.halted.set(key(topic, partition), { topic, partition, reason });
    metrics.partitionHalted.set(this.labels(topic, partition), 1);
    this.options.logger.error(
      { group: this.options.group, topic, partition, reason },
      `partition halted: ${reason}; nothing is applied there until an operator runs \`shoal offsets reset --group ${this.options.group} --topic ${topic} --partition ${partition} --to earliest|latest|N --reason "…"\``,
    );
  }

  isHalted(topic: string, partition: number): boolean {
    return this.halted.has(key(topic, partition));
  }

  /** Keeps only the partitions still owned (after a rebalance). */
  retain(owned: (topic: string, partition: number) => boolean): void {
    for (const { topic, partition } of this.halted.values())
      if (!owned(topic, partition)) this.forget(topic, partition);
  }

  problems(): string[] {
    return [...this.halted.values()].map((h) => `${h.topic}[${h.partition}] halted: ${h.reason}`);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async checkCleared(): Promise<void> {
    for (const { topic, partition } of [...this.halted.values()]) {
      try {
        if (await isHalted(this.options.pool, this.options.group, topic, partition)) continue;
        await this.options.resume(topic, partition);
        this.forget(topic, partition);
        this.options.logger.warn(
          { topic, partition },
          'partition halt cleared by a reset; resumed',
        );
      } catch (error) {
        this.options.logger.warn(
          { topic, partition, err: error },
          'could not check a halted partition',
        );
      }
    }
  }

  private forget(topic: string, partition: number): void {
    this.halted.delete(key(topic, partition));
    metrics.partitionHalted.set(this.labels(topic, partition), 0);
  }

  private labels(topic: string, partition: number) {
    return { group: this.options.group, topic, partition: String(partition) };
  }
}

const key = (topic: string, partition: number) => `${topic}:${partition}`;
