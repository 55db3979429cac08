import { topicKeyOf, type Codec } from '@shoal/contracts';
import { withTransaction, type Pool } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import type { Kafka, Message as KafkaOutgoing, Producer } from 'kafkajs';
import { Backoff } from './backoff.js';
import { HEADER } from './message.js';
import type { OutboxEvent } from './store.js';

// any fixed number: one relay per database publishes at a time, so per-key order holds across processes
const RELAY_LOCK = 0x5ea1_0b0c;

export type RelayHook = 'relay:published';

/**
 * Publishes outbox rows (each one transaction's events) in `seq` order with an idempotent producer
 * (acks=all, one request in flight), then marks them published. A crash between the two re-publishes the same events with
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

  /**
   * One round: lock, read unpublished rows in order (whole rows, about `batchSize` events), publish
   * their events in requests of at most `batchSize`, mark the rows. Returns how many events went out.
   */
  async publishOnce(): Promise<number> {
    const { pool, codec, batchSize = 1000 } = this.options;
    return withTransaction(pool, async (tx) => {
      const { rows: lock } = await tx.query<{ ok: boolean }>(
        'SELECT pg_try_advisory_xact_lock($1) AS ok',
        [RELAY_LOCK],
      );
      if (!lock[0]!.ok) return 0;
      // rows up to the first that brings the running count to batchSize (at least one row)
      const { rows } = await tx.query<{ seq: number; events: OutboxEvent[] }>(
        `SELECT seq, events FROM (
           SELECT seq, events, sum(event_count) OVER (ORDER BY seq) - event_count AS before
           FROM (SELECT seq, events, event_count FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1) u
         ) r WHERE before < $1 ORDER BY seq`,
        [batchSize],
      );
      if (rows.length === 0) {
        metrics.outboxBacklog.set(0);
        return 0;
      }
      const events = rows.flatMap((row) => row.events.map((event) => ({ seq: row.seq, event })));
      for (let i = 0; i < events.length; i += batchSize) {
        const byTopic = new Map<string, KafkaOutgoing[]>();
        for (const { seq, event } of events.slice(i, i + batchSize)) {
          const list = byTopic.get(event.topic) ?? [];
          byTopic.set(event.topic, list);
          if ('raw' in event) {
            // a dead letter: the original bytes and headers (its own message id included), verbatim
            list.push({
              key: event.keyBase64 === null ? null : Buffer.from(event.keyBase64, 'base64'),
              value: event.valueBase64 === null ? null : Buffer.from(event.valueBase64, 'base64'),
              headers: event.headers,
              timestamp: event.timestamp,
            });
            continue;
          }
          const key = topicKeyOf(event.topic);
          if (!key)
            throw new Error(
              `outbox row ${seq} names topic ${event.topic}, which is not a Shoal topic`,
            );
          list.push({
            key: event.key,
            value: await codec.encode(key, event.payload as never),
            headers: { ...event.headers, [HEADER.messageId]: event.eventId },
          });
        }
        await this.producer.sendBatch({
          acks: -1,
          topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
        });
        for (const [topic, messages] of byTopic)
          metrics.outboxPublished.inc({ topic }, messages.length);
      }
      this.options.hook?.('relay:published');
      await tx.query('UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])', [
        rows.map((r) => r.seq),
      ]);
      const { rows: backlog } = await tx.query<{ n: number }>(
        'SELECT coalesce(sum(event_count), 0)::int AS n FROM outbox WHERE published_at IS NULL',
      );
      metrics.outboxBacklog.set(backlog[0]!.n);
      return events.length;
    });
  }
}
