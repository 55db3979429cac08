import {
  assertValid,
  ContractError,
  dlqTopic,
  topicKeyOf,
  type Codec,
  type MessageTypes,
  type TopicKey,
} from '@shoal/contracts';
import { withTransaction, type Pool, type PoolClient } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import type { Batch, Consumer, ConsumerConfig, Kafka, KafkaMessage, Producer } from 'kafkajs';
import { Backoff } from './backoff.js';
import { deadLetterRecord, type Failure } from './dead-letter.js';
import { classify, PermanentError } from './errors.js';
import { DlqLimiter, DlqLimitExceeded } from './limits.js';
import { findStaleReferences, type Lookup } from './lookups.js';
import {
  eventId,
  HEADER,
  headersOf,
  messageIdOf,
  type Message,
  type OutgoingEvent,
} from './message.js';
import { decideAction, type FailurePolicyConfig } from './policy.js';
import { OutboxRelay, type RelayHook } from './relay.js';
import * as store from './store.js';

export interface HandlerContext<T> {
  /**
   * Queue an event for the outbox on behalf of `source`. Its id is derived from the source's
   * message id and how many events the source emitted before it, so a re-run gives the same id;
   * `build` receives that id (to put in the payload) and returns the event.
   */
  emit(source: Message<T>, build: (eventId: string) => OutgoingEvent): void;
  logger: Logger;
}

/**
 * The service's domain logic: apply `batch` (decoded, deduplicated, references checked) with `tx`.
 * See README.md for the contract.
 */
export type Handler<T> = (
  batch: Message<T>[],
  tx: PoolClient,
  ctx: HandlerContext<T>,
) => Promise<void>;

export type RuntimeHook = RelayHook | 'consumer:before-commit' | 'consumer:after-dead-letter';

export interface ConsumerOptions<K extends TopicKey> {
  /** Consumer group: Kafka's group id and the key of offsets, ledger entries and event ids in PostgreSQL. */
  group: string;
  /** Catalog keys of the topics to read, and the full names (namespace included) of every topic. */
  topics: K[];
  topicNames: Record<TopicKey, string>;
  handle: Handler<MessageTypes[K]>;
  lookups?: Lookup<MessageTypes[K]>[];
  /** An id the payload carries (e.g. an occurrence's id), so an upstream re-send is applied once. */
  messageId?: (value: MessageTypes[K], topicKey: K) => string | undefined;
  pool: Pool;
  kafka: Kafka;
  codec: Codec;
  failure: FailurePolicyConfig;
  logger: Logger;
  /** Messages applied per transaction (a kafkajs batch is split into chunks of this size). */
  maxBatchSize?: number;
  /** Partitions applied in parallel, each in its own transaction (default 3). */
  concurrency?: number;
  /** Where a partition with no offset in PostgreSQL starts: its earliest message (default) or the end. */
  startFrom?: 'earliest' | 'latest';
  consumerConfig?: Partial<ConsumerConfig>;
  /** Fault injection for tests: called at named points (kill-anywhere tests SIGKILL themselves there). */
  hook?: (point: RuntimeHook) => void;
}

export interface RunningConsumer {
  /** Settles when the consumer stops: resolves after stop(), rejects when a dead-letter limit stopped it. */
  done: Promise<void>;
  stop(): Promise<void>;
  consumer: Consumer;
  relay: OutboxRelay;
}

interface Decoded<T> {
  record: KafkaMessage;
  offset: number;
  message?: Message<T>;
  failure?: Failure;
  messageId: string;
}

const PRUNE_EVERY_MS = 10 * 60_000;

export async function runConsumer<K extends TopicKey>(
  options: ConsumerOptions<K>,
): Promise<RunningConsumer> {
  type T = MessageTypes[K];
  const { group, pool, kafka, codec, logger, failure } = options;
  const maxBatchSize = options.maxBatchSize ?? 500;
  const limiter = new DlqLimiter(failure.limits);
  const backoff = new Backoff();
  const topicKeyByName = new Map(options.topics.map((k) => [options.topicNames[k], k]));
  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    maxWaitTimeInMs: 1_000,
    ...options.consumerConfig,
  });
  const dlqProducer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const admin = kafka.admin();
  const relay = new OutboxRelay({ pool, kafka, codec, logger, hook: options.hook });
  /** Where each assigned partition must resume when PostgreSQL has no offset for it (its low watermark). */
  const startOffsets = new Map<string, number>();
  /** Partitions already sought back once to close a gap; a second gap there is accepted (retention). */
  const soughtForGap = new Set<string>();
  const tpKey = (topic: string, partition: number) => `${topic}:${partition}`;

  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  let stopping = false;

  async function startOffsetFor(topic: string, partition: number): Promise<number> {
    const key = tpKey(topic, partition);
    let start = startOffsets.get(key);
    if (start === undefined) {
      const offsets = await admin.fetchTopicOffsets(topic);
      for (const p of offsets) {
        startOffsets.set(
          tpKey(topic, p.partition),
          Number(options.startFrom === 'latest' ? p.high : p.low),
        );
      }
      start = startOffsets.get(key) ?? 0;
    }
    return start;
  }

  async function decode(
    topic: string,
    partition: number,
    record: KafkaMessage,
  ): Promise<Decoded<T>> {
    const topicKey = topicKeyByName.get(topic)!;
    const headers = headersOf(record.headers);
    const offset = Number(record.offset);
    try {
      const value = (await codec.decode(topicKey, record.value)) as T;
      const messageId = messageIdOf(
        record,
        headers,
        topic,
        partition,
        options.messageId?.(value, topicKey),
      );
      const message: Message<T> = {
        topic,
        topicKey,
        partition,
        offset,
        key: record.key?.toString() ?? null,
        value,
        headers,
        timestamp: Number(record.timestamp),
        messageId,
        traceId:
          headers[HEADER.traceId] ??
          ((value as { shoal?: { trace_id?: string } }).shoal?.trace_id || undefined),
      };
      return { record, offset, message, messageId };
    } catch (error) {
      if (!(error instanceof ContractError)) throw error; // registry unreachable: transient
      return {
        record,
        offset,
        failure: { reason: error.reason, error },
        messageId: messageIdOf(record, headers, topic, partition),
      };
    }
  }

  /**
   * Applies `messages` through the handler inside savepoints. The whole batch first; when it throws
   * a permanent error, the culprit (named by the error's offset, else found by running messages
   * one by one) is set aside and the rest applied, so one poison message never rolls back the others.
   */
  type Emitted = { source: Message<T>; id: string; event: OutgoingEvent };

  async function applyIsolated(tx: PoolClient, messages: Message<T>[]) {
    const failed = new Map<Message<T>, Failure>();
    const attempt = async (batch: Message<T>[]) => {
      const emitted: Emitted[] = [];
      const ordinals = new Map<Message<T>, number>();
      const ctx: HandlerContext<T> = {
        logger,
        emit(source, build) {
          const ordinal = ordinals.get(source) ?? 0;
          ordinals.set(source, ordinal + 1);
          const id = eventId(group, source.messageId, ordinal);
          const event = build(id);
          const key = topicKeyOf(event.topic);
          if (!key) throw new Error(`emit: ${event.topic} is not a Shoal topic`);
          assertValid(key, event.value);
          emitted.push({ source, id, event });
        },
      };
      await tx.query('SAVEPOINT shoal_apply');
      try {
        await options.handle(batch, tx, ctx);
        await tx.query('RELEASE SAVEPOINT shoal_apply');
        return { ok: true as const, emitted };
      } catch (error) {
        await tx.query('ROLLBACK TO SAVEPOINT shoal_apply');
        const c = classify(error);
        if (c.kind === 'transient') throw error;
        return { ok: false as const, error: error as Error, reason: c.reason, entity: c.entity };
      }
    };

    let remaining = messages;
    while (remaining.length > 0) {
      const whole = await attempt(remaining);
      if (whole.ok) return { applied: remaining, failed, emitted: whole.emitted };
      const named =
        whole.error instanceof PermanentError && whole.error.offset !== undefined
          ? remaining.find((m) => m.offset === (whole.error as PermanentError).offset)
          : undefined;
      if (named) {
        failed.set(named, { reason: whole.reason, entity: whole.entity, error: whole.error });
        remaining = remaining.filter((m) => m !== named);
        continue;
      }
      // no culprit named: one message at a time
      const applied: Message<T>[] = [];
      const emitted: Emitted[] = [];
      for (const message of remaining) {
        const one = await attempt([message]);
        if (one.ok) {
          applied.push(message);
          emitted.push(...one.emitted);
        } else {
          failed.set(message, { reason: one.reason, entity: one.entity, error: one.error });
        }
      }
      return { applied, failed, emitted };
    }
    return { applied: [], failed, emitted: [] };
  }

  /** One chunk of one partition, in one transaction: effects, ledger, outbox, failures, offset. */
  async function applyChunk(
    topic: string,
    partition: number,
    records: KafkaMessage[],
  ): Promise<{ seekTo?: number; wroteOutbox: boolean }> {
    const started = process.hrtime.bigint();
    const decoded = await Promise.all(records.map((r) => decode(topic, partition, r)));
    const result = await withTransaction(pool, async (tx) => {
      const stored =
        (await store.lockOffset(tx, group, topic, partition)) ??
        (await startOffsetFor(topic, partition));
      const first = decoded[0]!.offset;
      if (first > stored && !soughtForGap.has(tpKey(topic, partition))) {
        // the fetch started past what PostgreSQL has applied (the seek on assignment lost the race)
        soughtForGap.add(tpKey(topic, partition));
        return { seekTo: stored, wroteOutbox: false, applied: 0, failures: [] as never[] };
      }
      if (first > stored)
        logger.warn(
          { topic, partition, from: stored, to: first },
          'offsets missing from the log (retention?); continuing',
        );
      const fresh = decoded.filter((d) => d.offset >= stored);
      if (fresh.length === 0) return { wroteOutbox: false, applied: 0, failures: [] };

      // idempotency on the message id: redeliveries, replays, duplicates within the chunk
      const claimed = await store.claimMessageIds(
        tx,
        group,
        fresh.filter((d) => d.message).map((d) => d.messageId),
      );
      const candidates: Message<T>[] = [];
      let duplicates = 0;
      for (const d of fresh) {
        if (!d.message) continue;
        if (claimed.delete(d.messageId)) candidates.push(d.message);
        else duplicates++;
      }
      const stale = await findStaleReferences(candidates, options.lookups ?? [], tx);
      const { applied, failed, emitted } = await applyIsolated(
        tx,
        candidates.filter((m) => !stale.has(m)),
      );
      for (const [message, error] of stale)
        failed.set(message, { reason: error.reason, entity: error.entity, error });

      const failures = fresh.flatMap((d) => {
        const f = d.failure ?? (d.message && failed.get(d.message));
        return f
          ? [{ d, failure: f, action: decideAction(failure.policy, f.reason, f.entity) }]
          : [];
      });
      const failedOffsets = new Set(failures.map((f) => f.d.offset));
      const appliedSet = new Set(applied);
      limiter.record(
        fresh
          .filter((d) => failedOffsets.has(d.offset) || (d.message && appliedSet.has(d.message)))
          .map((d) => !failedOffsets.has(d.offset)),
      );

      await store.releaseMessageIds(
        tx,
        group,
        failures.flatMap((f) => (f.d.message ? [f.d.messageId] : [])),
      );
      await store.writeOutbox(
        tx,
        emitted.map(({ source, id, event }) => ({
          eventId: id,
          topic: event.topic,
          key: event.key,
          payload: event.value,
          headers: {
            ...event.headers,
            ...(source.traceId ? { [HEADER.traceId]: source.traceId } : {}),
          },
        })),
      );

      // dead-letter before the offset moves: the write is acknowledged (acks=all) before this commits
      const toDlq = failures.filter((f) => f.action === 'dlq');
      if (toDlq.length) {
        await dlqProducer.send({
          topic: dlqTopic(topic),
          acks: -1,
          messages: toDlq.map((f) =>
            deadLetterRecord(
              f.d.record,
              { topic, partition, group, messageId: f.d.messageId },
              f.failure,
            ),
          ),
        });
        options.hook?.('consumer:after-dead-letter');
      }
      await store.recordFailures(
        tx,
        group,
        failures.map((f) => ({
          topic,
          partition,
          offset: f.d.offset,
          key: f.d.record.key?.toString() ?? null,
          messageId: f.d.messageId,
          reason: f.failure.reason,
          entity: f.failure.entity,
          action: f.action,
          errorClass: f.failure.error.name,
          errorMessage: f.failure.error.message,
        })),
      );
      await store.storeOffset(tx, group, topic, partition, decoded.at(-1)!.offset + 1);
      options.hook?.('consumer:before-commit');
      if (duplicates) metrics.duplicates.inc({ group, topic }, duplicates);
      return { wroteOutbox: emitted.length > 0, applied: applied.length, failures };
    });

    // after commit: count and log what happened
    if (result.applied) metrics.processed.inc({ group, topic }, result.applied);
    for (const f of result.failures) {
      metrics.failed.inc({
        group,
        topic,
        reason: f.failure.reason,
        entity: f.failure.entity ?? '',
        action: f.action,
      });
      logger.warn(
        {
          topic,
          partition,
          offset: f.d.offset,
          key: f.d.record.key?.toString(),
          messageId: f.d.messageId,
          traceId: f.d.message?.traceId,
          reason: f.failure.reason,
          entity: f.failure.entity,
          action: f.action,
          err: f.failure.error,
        },
        f.action === 'dlq' ? 'message dead-lettered' : 'message skipped',
      );
    }
    metrics.batchSeconds.observe({ group }, Number(process.hrtime.bigint() - started) / 1e9);
    if (result.seekTo === undefined) soughtForGap.delete(tpKey(topic, partition));
    return result;
  }

  function retryLater(topic: string, partition: number, from: number, error: unknown): void {
    const { delayMs, attempt } = backoff.next(tpKey(topic, partition));
    metrics.transientRetries.inc({ group, error: (error as Error)?.name ?? 'unknown' });
    logger.warn(
      { topic, partition, offset: from, attempt, delayMs, err: error },
      'transient failure; partition paused, batch will be retried',
    );
    consumer.pause([{ topic, partitions: [partition] }]);
    consumer.seek({ topic, partition, offset: String(from) });
    setTimeout(() => {
      if (!stopping) consumer.resume([{ topic, partitions: [partition] }]);
    }, delayMs).unref();
  }

  async function eachBatch({
    batch,
    resolveOffset,
    heartbeat,
    isRunning,
    isStale,
  }: {
    batch: Batch;
    resolveOffset(o: string): void;
    heartbeat(): Promise<void>;
    isRunning(): boolean;
    isStale(): boolean;
  }) {
    const { topic, partition } = batch;
    for (let i = 0; i < batch.messages.length; i += maxBatchSize) {
      if (!isRunning() || isStale() || stopping) return;
      const chunk = batch.messages.slice(i, i + maxBatchSize);
      try {
        const result = await applyChunk(topic, partition, chunk);
        if (result.seekTo !== undefined) {
          logger.info(
            { topic, partition, offset: result.seekTo },
            'fetch was ahead of the stored offset; seeking back',
          );
          consumer.seek({ topic, partition, offset: String(result.seekTo) });
          return;
        }
        if (result.wroteOutbox) relay.notify();
        resolveOffset(chunk.at(-1)!.offset);
        backoff.reset(tpKey(topic, partition));
      } catch (error) {
        if (error instanceof DlqLimitExceeded) {
          logger.fatal({ topic, partition, limit: error.limit }, error.message);
          void stopAll().then(() => settle.reject(error));
          return;
        }
        // everything permanent was settled per message inside applyChunk; what escapes is transient
        retryLater(topic, partition, Number(chunk[0]!.offset), error);
        return;
      }
      await heartbeat();
    }
    metrics.lag.set({ group, topic, partition: String(partition) }, Number(batch.offsetLag()));
    // Kafka's committed offset is only for lag tooling; PostgreSQL is the source of truth
    await consumer
      .commitOffsets([{ topic, partition, offset: String(Number(batch.lastOffset()) + 1) }])
      .catch(() => undefined);
  }

  async function seekToStoredOffsets(assignment: Record<string, number[]>) {
    startOffsets.clear();
    for (const [topic, partitions] of Object.entries(assignment)) {
      const stored = await store.storedOffsets(pool, group, topic);
      for (const partition of partitions) {
        const offset = stored.get(partition) ?? (await startOffsetFor(topic, partition));
        consumer.seek({ topic, partition, offset: String(offset) });
      }
    }
  }

  const pruneTimer = setInterval(() => {
    store
      .prune(pool, failure.ledgerRetentionMs)
      .catch((error: unknown) => logger.warn({ err: error }, 'pruning failed'));
  }, PRUNE_EVERY_MS).unref();
  async function stopAll() {
    if (stopping) return;
    stopping = true;
    clearInterval(pruneTimer);
    await consumer.disconnect().catch(() => undefined);
    await relay.stop().catch(() => undefined);
    await dlqProducer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    const assignment = event.payload.memberAssignment as Record<string, number[]>;
    logger.info({ group, assignment }, 'partitions assigned');
    // kafkajs does not await this listener; the offset guard in applyChunk covers the race
    seekToStoredOffsets(assignment).catch((error: unknown) =>
      logger.warn({ err: error }, 'could not seek to stored offsets; the offset guard will'),
    );
  });
  consumer.on(consumer.events.CRASH, (event) => {
    logger.error(
      { err: event.payload.error, restart: event.payload.restart },
      'kafka consumer crashed',
    );
    if (!event.payload.restart && !stopping)
      void stopAll().then(() => settle.reject(event.payload.error));
  });

  await Promise.all([dlqProducer.connect(), admin.connect(), relay.start()]);
  await consumer.connect();
  await consumer.subscribe({
    topics: options.topics.map((k) => options.topicNames[k]),
    fromBeginning: options.startFrom !== 'latest',
  });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 1,
    eachBatch,
  });
  return {
    done,
    consumer,
    relay,
    stop: async () => {
      await stopAll();
      settle.resolve();
    },
  };
}
