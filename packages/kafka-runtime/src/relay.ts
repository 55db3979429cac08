import { topicKeyOf, type Codec } from '@shoal/contracts';
import { withTransaction, type Pool } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import type { Kafka, Message, Producer } from 'kafkajs';
import { Backoff, WakeableSleep } from './backoff.js';
import { classify, PermanentError } from './errors.js';
import { HEADER } from './message.js';
import { isRawEvent, recordOutboxFailures, type OutboxEvent, type OutboxFailure } from './store.js';

/**
 * The outbox relay: publishes the outbox rows of the service schema its pool's connections use (each
 * row one transaction's events, in order) to Kafka, then marks them published.
 *
 * Order. Rows go out in `seq` order, and a row goes out only when every transaction that began writing
 * before the one that wrote it has ended (its `txid` is below the snapshot's xmin) and every row
 * before it has gone out. So a row of a transaction still open holds back the rows after it instead
 * of being overtaken by them. `seq`, not `txid`, decides the order because a transaction that saw
 * another's committed effects writes its outbox row after that one's (the runtime writes the outbox
 * last), whereas it may have begun writing first. One relay per service schema runs a round at a time
 * (an advisory lock keyed by `current_schema()`), so the order holds across processes. The price: a
 * long-running writing transaction anywhere on the server holds rows back until it ends.
 *
 * Delivery is at least once: a crash between publishing and marking, or the re-send that isolates a
 * refused event, publishes an event again with the same id. Consumers are idempotent on that id (the
 * `shoal.message-id` header, set from `eventId` on encoded events; raw events carry their own).
 *
 * Failures, decided by `classify`: an event that cannot be encoded (schema-invalid payload, not a
 * Shoal topic) or that the broker refuses for good (e.g. a record too large) is set aside in
 * `outbox_failures` with a metric and an error log, and the rest flows. Anything transient (broker or
 * registry unreachable) rolls the round back; it is retried with backoff, nothing marked.
 */

// with the schema's hash, the two-int advisory lock key: one relay round per service schema at a time
const RELAY_LOCK_CLASS = 0x5ea1_0b0c;

/**
 * Unpublished rows in `seq` order, stopping before the first not yet safe to publish (a transaction
 * that began before the one that wrote it is still open) and after the first that brings the running
 * event count to `$1`; beside them (and alone, seq null, when none is ready) the unpublished event
 * count before this round.
 */
const READY_ROWS = `
  SELECT r.seq, r.events, r.validated, b.backlog
  FROM (SELECT coalesce(sum(event_count), 0)::int AS backlog FROM outbox WHERE published_at IS NULL) b
  LEFT JOIN (
    SELECT seq, events, validated FROM (
      SELECT seq, events, validated, sum(event_count) OVER w - event_count AS before,
             bool_and(txid < pg_snapshot_xmin(pg_current_snapshot())) OVER w AS settled
      FROM (SELECT seq, events, event_count, validated, txid FROM outbox
            WHERE published_at IS NULL ORDER BY seq LIMIT $1) u
      WINDOW w AS (ORDER BY seq)
    ) w WHERE before < $1 AND settled
  ) r ON true
  ORDER BY r.seq`;

export type RelayHook = 'relay:published';

interface Pending {
  seq: number;
  /** From 1, as in the `outbox_events` view. */
  ordinal: number;
  event: OutboxEvent;
  /** Validated against its topic's schema when it was emitted: encoded without validating again. */
  validated: boolean;
}

interface Round {
  handled: number;
  failures: OutboxFailure[];
}

interface Outgoing {
  pending: Pending;
  message: Message;
}

/** What a relay reports; by default the process's metrics (a relay thread forwards them to its parent). */
export interface RelayMetrics {
  backlog(events: number): void;
  published(topic: string, events: number): void;
  failed(topic: string, errorClass: string): void;
}

export const processRelayMetrics: RelayMetrics = {
  backlog: (events) => metrics.outboxBacklog.set(events),
  published: (topic, events) => metrics.outboxPublished.inc({ topic }, events),
  failed: (topic, errorClass) => metrics.outboxFailed.inc({ topic, error_class: errorClass }),
};

/** The relay as the consumer drives it: in its thread (`OutboxRelay`) or in one of its own (`RelayThread`). */
export interface Relay {
  start(): Promise<void>;
  /** Called after a commit that wrote outbox rows, so they go out without waiting for the poll. */
  notify(): void;
  stop(): Promise<void>;
}

export class UnknownTopicError extends PermanentError {
  constructor(topic: string) {
    super('processing_error', `${topic} is not a Shoal topic: there is no schema to encode with`);
  }
}

export class OutboxRelay implements Relay {
  private producer?: Producer;
  private running = false;
  private readonly sleeper = new WakeableSleep();
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
      /** Called (and awaited) after a round's events went out and before they are marked published. */
      hook?: (point: RelayHook) => void | Promise<void>;
      metrics?: RelayMetrics;
    },
  ) {}

  private get metrics(): RelayMetrics {
    return this.options.metrics ?? processRelayMetrics;
  }

  async start(): Promise<void> {
    this.producer = await this.connectProducer();
    this.running = true;
    this.loop = this.run();
  }

  notify(): void {
    this.sleeper.wake();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.notify();
    await this.loop;
    await this.producer?.disconnect();
  }

  private async connectProducer(): Promise<Producer> {
    const producer = this.options.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    return producer;
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
        await this.sleeper.sleep(delayMs);
        continue;
      }
      if (published === 0) await this.sleeper.sleep(this.options.pollMs ?? 200);
    }
  }

  /**
   * One round: lock, read the rows ready to go (whole rows, about `batchSize` events), publish their
   * events in requests of at most `batchSize`, set aside the ones that cannot go, mark the rows.
   * Returns how many events it handled (published or set aside).
   */
  async publishOnce(): Promise<number> {
    const { pool, batchSize = 1000 } = this.options;
    // the lock is taken with BEGIN, in one round trip; the rows are read after it, by a statement
    // whose snapshot sees what the relay that held it before marked
    const lock = `SELECT pg_try_advisory_xact_lock(${RELAY_LOCK_CLASS}, hashtext(current_schema())) AS ok`;
    const round = await withTransaction(
      pool,
      async (tx, locked): Promise<Round> => {
        if (!(locked!.rows[0] as { ok: boolean }).ok) return { handled: 0, failures: [] };
        const { rows: read } = await tx.query<{
          seq: number | null;
          events: OutboxEvent[];
          validated: boolean;
          backlog: number;
        }>(READY_ROWS, [batchSize]);
        const rows = read.filter((r) => r.seq !== null);
        const pending = rows.flatMap((row) =>
          row.events.map((event, i) => ({
            seq: row.seq!,
            ordinal: i + 1,
            event,
            validated: row.validated,
          })),
        );
        const failures: OutboxFailure[] = [];
        if (rows.length > 0) {
          for (let i = 0; i < pending.length; i += batchSize)
            await this.produce(
              await this.encode(pending.slice(i, i + batchSize), failures),
              failures,
            );
          await this.options.hook?.('relay:published');
          await recordOutboxFailures(tx, failures);
          await tx.query('UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])', [
            rows.map((r) => r.seq),
          ]);
        }
        // every event of the rows read was published or set aside: the rows are marked
        this.metrics.backlog(read[0]!.backlog - pending.length);
        return { handled: pending.length, failures };
      },
      lock,
    );
    for (const { seq, ordinal, event, errorClass, errorMessage } of round.failures) {
      this.metrics.failed(event.topic, errorClass);
      this.options.logger.error(
        { seq, ordinal, eventId: event.eventId, topic: event.topic, errorClass, errorMessage },
        'outbox event set aside in outbox_failures: it cannot be encoded or produced',
      );
    }
    return round.handled;
  }

  /** The records to send; events that cannot be encoded go to `failures` instead. */
  private async encode(batch: Pending[], failures: OutboxFailure[]): Promise<Outgoing[]> {
    const outgoing: Outgoing[] = [];
    for (const pending of batch) {
      try {
        outgoing.push({ pending, message: await this.messageOf(pending) });
      } catch (error) {
        if (classify(error).kind === 'transient') throw error;
        failures.push(failureOf(pending, error));
      }
    }
    return outgoing;
  }

  private async messageOf({ event, validated }: Pending): Promise<Message> {
    if (isRawEvent(event))
      return {
        key: event.keyBase64 === null ? null : Buffer.from(event.keyBase64, 'base64'),
        value: event.valueBase64 === null ? null : Buffer.from(event.valueBase64, 'base64'),
        headers: event.headers,
        ...(event.timestamp === undefined ? {} : { timestamp: event.timestamp }),
      };
    const topicKey = topicKeyOf(event.topic);
    if (!topicKey) throw new UnknownTopicError(event.topic);
    return {
      key: event.key,
      value: await this.options.codec.encode(topicKey, event.payload as never, { validated }),
      headers: { ...event.headers, [HEADER.messageId]: event.eventId },
    };
  }

  /**
   * Sends in order. When the broker refuses a request for good, its events are sent again one at a
   * time, in order, so only the one(s) it refuses are set aside.
   */
  private async produce(outgoing: Outgoing[], failures: OutboxFailure[]): Promise<void> {
    if (outgoing.length === 0) return;
    try {
      await this.send(outgoing);
    } catch (error) {
      if (classify(error).kind === 'transient') throw error;
      if (outgoing.length === 1) failures.push(failureOf(outgoing[0]!.pending, error));
      else for (const one of outgoing) await this.produce([one], failures);
    }
  }

  private async send(outgoing: Outgoing[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const { pending, message } of outgoing) {
      const list = byTopic.get(pending.event.topic) ?? [];
      list.push(message);
      byTopic.set(pending.event.topic, list);
    }
    const producer = (this.producer ??= await this.connectProducer());
    try {
      await producer.sendBatch({
        acks: -1,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    } catch (error) {
      // A failed request may have been taken by some partitions: the idempotent producer's sequence
      // numbers then lag the broker's, and its next send there would be refused as out of order.
      // The next send starts a fresh producer (a new producer id) instead.
      this.producer = undefined;
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
    for (const [topic, messages] of byTopic) this.metrics.published(topic, messages.length);
  }
}

const failureOf = ({ seq, ordinal, event }: Pending, error: unknown): OutboxFailure => ({
  seq,
  ordinal,
  event,
  errorClass: error instanceof Error ? error.name : typeof error,
  errorMessage: error instanceof Error ? error.message : String(error),
});
