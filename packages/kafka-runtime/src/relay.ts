import { topicKeyOf, type Codec } from '@shoal/contracts';
import { withTransaction, type Pool } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import type { Kafka, Producer } from 'kafkajs';
import { Backoff } from './backoff.js';
import { HEADER } from './message.js';

// any fixed number: one relay per database publishes at a time, so per-key order holds across processes
const RELAY_LOCK = 0x5ea1_0b0c;

export type RelayHook = 'relay:published';

/**
 * Publishes outbox rows in `seq` order with an idempotent producer (acks=all, one request in
 * flight), then marks them published. A crash between the two re-publishes the same events with
 * the same ids: consumers are idempotent on the event id (the `shoal.message-id` header).
 */
export class OutboxRelay {
  private producer: Producer;
  private running = false;
  private wake?: () => void;
  private loop?: Promise<void>;
  private readonly backoff = new Backoff();

  constructor(
    private readonly options: {
      pool: Pool;
      kafka: Kafka;
      codec: Codec;
      logger: Logger;
      batchSize?: number;
      pollMs?: number;
      hook?: (point: RelayHook) => void;
    },
  ) {
    this.producer = options.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  }

  async start(): Promise<void> {
    await this.producer.connect();
    this.running = true;
    this.loop = this.run();
  }

  /** Called after a consumer commit that wrote outbox rows, so they go out without waiting for the poll. */
  notify(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.notify();
    await this.loop;
    await this.producer.disconnect();
  }

  private async run(): Promise<void> {
    while (this.running) {
      let published = 0;
      try {
        published = await this.publishOnce();
        this.backoff.reset('relay');
      } catch (error) {
        const { delayMs, attempt } = this.backoff.next('relay');
        this.options.logger.warn({ err: error, attempt, delayMs }, 'outbox relay failed; retrying');
        await this.sleep(delayMs);
        continue;
      }
      if (published === 0) await this.sleep(this.options.pollMs ?? 200);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** One batch: lock, read unpublished rows in order, publish, mark. Returns how many went out. */
  async publishOnce(): Promise<number> {
    const { pool, codec, batchSize = 1000 } = this.options;
    return withTransaction(pool, async (tx) => {
      const { rows: lock } = await tx.query<{ ok: boolean }>(
        'SELECT pg_try_advisory_xact_lock($1) AS ok',
        [RELAY_LOCK],
      );
      if (!lock[0]!.ok) return 0;
      const { rows } = await tx.query<{
        seq: number;
        event_id: string;
        topic: string;
        message_key: string;
        payload: Record<string, unknown>;
        headers: Record<string, string>;
      }>(
        'SELECT seq, event_id, topic, message_key, payload, headers FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1',
        [batchSize],
      );
      if (rows.length === 0) {
        metrics.outboxBacklog.set(0);
        return 0;
      }
      const byTopic = new Map<
        string,
        { key: string; value: Buffer; headers: Record<string, string> }[]
      >();
      for (const row of rows) {
        const key = topicKeyOf(row.topic);
        if (!key)
          throw new Error(
            `outbox row ${row.seq} names topic ${row.topic}, which is not a Shoal topic`,
          );
        const value = await codec.encode(key, row.payload as never);
        const list = byTopic.get(row.topic) ?? [];
        list.push({
          key: row.message_key,
          value,
          headers: { ...row.headers, [HEADER.messageId]: row.event_id },
        });
        byTopic.set(row.topic, list);
      }
      await this.producer.sendBatch({
        acks: -1,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
      this.options.hook?.('relay:published');
      await tx.query('UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])', [
        rows.map((r) => r.seq),
      ]);
      for (const [topic, messages] of byTopic)
        metrics.outboxPublished.inc({ topic }, messages.length);
      const { rows: backlog } = await tx.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL',
      );
      metrics.outboxBacklog.set(backlog[0]!.n);
      return rows.length;
    });
  }
}
