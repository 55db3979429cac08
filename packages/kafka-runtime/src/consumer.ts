import type { Codec, MessageTypes, TopicKey } from '@shoal/contracts';
import type { Pool } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import type { Consumer, ConsumerConfig, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { Backoff } from './backoff.js';
import {
  chunkApplier,
  decodeAhead,
  heldRedriver,
  parkedExpirer,
  releasedKeyDrainer,
  type ChunkDeps,
  type RuntimeHookPoint,
} from './chunk.js';
import { recordDecoder, type Decoded } from './decode.js';
import { classify, TransientError } from './errors.js';
import { TransientEscalation } from './escalation.js';
import { HaltedPartitions } from './halts.js';
import type { Handler } from './handler.js';
import { DlqLimiter, DlqLimitExceeded } from './limits.js';
import type { Lookup } from './lookups.js';
import type { ApplyGate } from './rebuild-gate.js';
import { OffsetGuard } from './offset-guard.js';
import { assertKnownEntityKinds, shortTopicName, type FailurePolicyConfig } from './policy.js';
import { heldPartitions } from './held.js';
import { PartitionLanes, type Lane } from './lanes.js';
import { partitionsWithExpiredKeys, releasedPartitions } from './parking.js';
import { OutboxRelay, type Relay, type RelayHook } from './relay.js';
import { startPruning, type ServiceRetention } from './retention.js';
import type { ScheduledHook } from './scheduled.js';
import * as store from './store.js';

/** How long after a crash kafkajs would not restart, but whose cause is transient, the consumer runs again. */
const CRASH_RERUN_MS = 1_000;

export type RuntimeHook = RelayHook | RuntimeHookPoint | ScheduledHook;

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
  /**
   * Partitions applied at once (lanes.ts), each in its own transaction on its own pooled
   * connection; default 1. Keep it below the pool's size.
   */
  concurrency?: number;
  /** Where a partition with no offset in PostgreSQL starts: its earliest message (default) or the end. */
  startFrom?: 'earliest' | 'latest';
  /** How long a partition may fail transiently before it is escalated (default 60 s). */
  transientEscalateMs?: number;
  /** How often a halted partition checks whether an operator's reset cleared it (default 5 s). */
  haltCheckMs?: number;
  /** The service's own tables' retention, run by the consumer's pruner (retention.ts) with the runtime's. */
  retention?: ServiceRetention;
  /** How often the pruner runs (default 10 minutes; it also runs at start). */
  pruneEveryMs?: number;
  consumerConfig?: Partial<ConsumerConfig>;
  /** Kafka's group id when it is not `group` (a rebuild reads as a fresh group but keys PostgreSQL as the live one). */
  kafkaGroupId?: string;
  /**
   * The outbox relay: by default an `OutboxRelay` on this thread (runService gives it a thread:
   * relay-thread.ts); `false` runs none (a rebuild publishes nothing, dead letters included).
   */
  relay?: Relay | false;
  /** What may be applied when (a rebuild's stop offsets and time order, rebuild-gate.ts); everything when absent. */
  gate?: ApplyGate;
  /** Fault injection for tests: called at named points (kill-anywhere tests SIGKILL themselves there). */
  hook?: (point: RuntimeHook) => void;
}

export interface RunningConsumer {
  /** Settles when the consumer stops: resolves after stop(), rejects when a dead-letter limit stopped it. */
  done: Promise<void>;
  stop(): Promise<void>;
  /** For `/readyz`: rejects naming every partition escalated on a transient failure or halted. */
  check(): Promise<void>;
  consumer: Consumer;
  relay: Relay;
}

/**
 * The consumer: kafkajs delivers batches per partition into the partition's lane (lanes.ts), which
 * applies them in chunks (chunk.ts: one transaction each) while kafkajs fetches on; what a chunk
 * cannot settle is handled here: a transient failure pauses the partition, seeks back and retries
 * with backoff (escalation.ts past its deadline), a halted partition stays paused (halts.ts), a
 * crossed dead-letter limit stops the consumer. On assignment it seeks every partition to
 * PostgreSQL's offset (the guard verifies).
 */
export async function runConsumer<K extends TopicKey>(
  options: ConsumerOptions<K>,
): Promise<RunningConsumer> {
  type T = MessageTypes[K];
  const { group, pool, kafka, logger, failure } = options;
  assertKnownEntityKinds(
    failure,
    (options.lookups ?? []).map((l) => l.entity),
  );
  const maxBatchSize = options.maxBatchSize ?? 500;
  const tpKey = (topic: string, partition: number) => `${topic}:${partition}`;
  const consumer = kafka.consumer({
    groupId: options.kafkaGroupId ?? group,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    maxWaitTimeInMs: 1_000,
    // kafkajs fetches again only once a fetch is applied: up to 8 MB a partition instead of 1 MB
    // (about one chunk) waits on fewer fetches (bench/grouping, one partition: +18 %)
    maxBytesPerPartition: 8 * 2 ** 20,
    ...options.consumerConfig,
  });
  const admin = kafka.admin();
  const relay =
    options.relay ||
    new OutboxRelay({ pool, kafka, codec: options.codec, logger, hook: options.hook });
  const guard = new OffsetGuard(admin, options.startFrom ?? 'earliest');
  const backoff = new Backoff();
  const escalation = new TransientEscalation(group, options.transientEscalateMs ?? 60_000, logger);
  const limiters = new Map<string, DlqLimiter>();
  const halts = new HaltedPartitions({
    group,
    pool,
    logger,
    checkEveryMs: options.haltCheckMs ?? 5_000,
    resume: async (topic, partition) => {
      const stored = (await store.storedOffsets(pool, group, topic)).get(partition);
      const offset = await guard.assigned(topic, partition, stored);
      consumer.seek({ topic, partition, offset: String(offset) });
      lanes.unblock(topic, partition);
      consumer.resume([{ topic, partitions: [partition] }]);
    },
  });
  const orderedTopics = new Set(
    options.topics
      .filter((k) => failure.parking.orderedTopics.includes(shortTopicName(k)))
      .map((k) => options.topicNames[k]),
  );
  const chunkDeps: ChunkDeps<T> = {
    group,
    pool,
    logger,
    decode: recordDecoder<K>({
      codec: options.codec,
      topicKeyByName: new Map(options.topics.map((k) => [options.topicNames[k], k])),
      messageId: options.messageId,
    }),
    guard,
    limiterOf: (topic, partition) => {
      let limiter = limiters.get(tpKey(topic, partition));
      if (!limiter)
        limiters.set(tpKey(topic, partition), (limiter = new DlqLimiter(failure.limits)));
      return limiter;
    },
    handle: options.handle,
    lookups: options.lookups ?? [],
    policy: failure.policy,
    references: failure.references,
    ordered: (topic) => orderedTopics.has(topic),
    maxParkedMessages: failure.parking.maxParkedMessages,
    parkedDeadlineMs: failure.parking.parkedDeadlineMs,
    hook: options.hook,
  };
  const applyChunk = chunkApplier<T>(chunkDeps);
  const drainReleased = releasedKeyDrainer<T>(chunkDeps);
  const expireParked = parkedExpirer<T>(chunkDeps);
  const redriveHeld = heldRedriver<T>(chunkDeps);
  const entityChangesTopic = options.topicNames.entityChanges;
  let owned: Record<string, number[]> = {};
  let draining = false;
  let redriving: Promise<void> | undefined;
  let redriveAgain = false;
  /**
   * Held messages that can be settled now (their entity announced or deleted, or their deadline
   * passed), on the partitions this member owns: right after an entity-change chunk, and on a timer.
   * One pass at a time; a request during a pass runs another after it.
   */
  function redriveOwned(): void {
    if (stopping || chunkDeps.lookups.length === 0) return;
    if (redriving) {
      redriveAgain = true;
      return;
    }
    redriving = (async () => {
      do {
        redriveAgain = false;
        try {
          for (const { topic, partition } of await heldPartitions(pool, group)) {
            if (stopping || !owned[topic]?.includes(partition)) continue;
            if (await redriveHeld(topic, partition)) relay.notify();
          }
        } catch (error) {
          logger.warn({ err: error }, 're-driving held messages failed; will retry');
        }
      } while (redriveAgain && !stopping);
    })().finally(() => (redriving = undefined));
  }
  /**
   * Keys released by a discard on an idle partition: drained here, since no chunk comes to do it; and
   * keys parked past the parked deadline: their messages dead-lettered (chunk.ts `parkedExpirer`).
   */
  async function drainDiscarded() {
    if (draining || stopping || orderedTopics.size === 0) return;
    draining = true;
    try {
      for (const { topic, partition } of await releasedPartitions(pool, group)) {
        if (!orderedTopics.has(topic) || !owned[topic]?.includes(partition)) continue;
        if (await drainReleased(topic, partition)) relay.notify();
      }
      const deadline = failure.parking.parkedDeadlineMs;
      for (const { topic, partition } of await partitionsWithExpiredKeys(pool, group, deadline)) {
        if (!owned[topic]?.includes(partition)) continue;
        if (await expireParked(topic, partition)) relay.notify();
      }
    } catch (error) {
      logger.warn({ err: error }, 'draining released or expired keys failed; will retry');
    } finally {
      draining = false;
    }
  }

  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  let stopping = false;
  /** A crashed consumer's next run (the CRASH listener below). */
  let rerun: NodeJS.Timeout | undefined;

  /** Pauses the partition for the consumer's own reasons: its lane drops what it holds and gets. */
  function hold(topic: string, partition: number): void {
    consumer.pause([{ topic, partitions: [partition] }]);
    lanes.block(topic, partition);
  }

  /** Pauses the partition, seeks it back to `from` and resumes it after a jittered backoff. */
  function retryLater(topic: string, partition: number, from: number, error: unknown): void {
    const { delayMs, attempt } = backoff.next(tpKey(topic, partition));
    metrics.transientRetries.inc({ group, error: (error as Error)?.name ?? 'unknown' });
    escalation.failed(topic, partition, from, error);
    const permanent = classify(error).kind === 'permanent';
    logger[permanent ? 'error' : 'warn'](
      { topic, partition, offset: from, attempt, delayMs, err: error },
      permanent
        ? 'permanent failure in a step that belongs to no message; partition paused, batch will be retried'
        : 'transient failure; partition paused, batch will be retried',
    );
    hold(topic, partition);
    consumer.seek({ topic, partition, offset: String(from) });
    setTimeout(() => {
      if (stopping || halts.isHalted(topic, partition)) return;
      lanes.unblock(topic, partition);
      consumer.resume([{ topic, partitions: [partition] }]);
    }, delayMs).unref();
  }

  /**
   * Applies the lane's next chunk (lanes.ts: one lane per partition, fetched ahead while
   * chunks apply). What a chunk cannot settle: a transient failure pauses the partition and
   * retries it from the chunk's first offset, a halt pauses it, a guard's seek seeks; each drops
   * what the lane holds, since it was fetched past that point.
   */
  async function applyNext(lane: Lane): Promise<void> {
    const { topic, partition } = lane;
    let chunk = lane.peek(maxBatchSize);
    if (options.gate) {
      const admitted = admittedByGate.get(lane);
      admittedByGate.delete(lane);
      if (admitted === undefined) return;
      if (admitted.length === 0) {
        hold(topic, partition);
        return;
      }
      if (admitted[0] !== chunk[0]) return; // the lane was cleared since: admit again
      chunk = admitted;
    }
    let decoded: Promise<Decoded<T>[]> | undefined;
    const ahead = decodingAhead.get(lane);
    decodingAhead.delete(lane);
    if (ahead && ahead.first === chunk[0]) {
      chunk = chunk.slice(0, ahead.count);
      decoded = ahead.decoded;
    }
    try {
      const applying = applyChunk(topic, partition, chunk, decoded);
      // a rebuild's gate decides each chunk only once the one before it applied
      if (!options.gate) decodeNextAhead(lane, chunk.length);
      const outcome = await applying;
      if (outcome.kind === 'halted') {
        hold(topic, partition);
        halts.halt(topic, partition, outcome.reason);
        return;
      }
      if (outcome.kind === 'seek') {
        if (outcome.repeated) {
          // a fetch ahead again after the seek back: not the assignment's race; retried, escalates
          const error = new TransientError(
            `fetch started at offset ${chunk[0]!.offset}, past the next offset to apply, ${outcome.to}, which the log still holds`,
          );
          retryLater(topic, partition, outcome.to, error);
        } else {
          logger.info(
            { topic, partition, offset: outcome.to, fetched: chunk[0]!.offset },
            'fetch was not at the stored offset; seeking',
          );
          consumer.seek({ topic, partition, offset: String(outcome.to) });
          lane.clear();
        }
        return;
      }
      lane.take(chunk);
      if (outcome.wroteOutbox) relay.notify();
      // a rebuild applies what a change released before any later record (rebuild-gate.ts); and
      // what the chunk itself announced (lifecycle's open makes the issue its agents' commands
      // name, which a rebuild reads in one chunk with them): live, the timer re-drives those
      if (topic === entityChangesTopic || (options.gate && outcome.held)) {
        redriveOwned();
        if (options.gate) await redriving;
      }
      const next = Number(chunk.at(-1)!.offset) + 1;
      options.gate?.applied(topic, partition, next);
      backoff.reset(tpKey(topic, partition));
      escalation.recovered(topic, partition);
      metrics.lag.set(
        { group, topic, partition: String(partition) },
        Math.max(0, Number(lane.highWatermark) - next),
      );
      commitForLagTooling(topic, partition, next, lane.size === 0);
    } catch (error) {
      if (error instanceof DlqLimitExceeded) {
        logger.fatal({ topic, partition, limit: error.limit }, error.message);
        void stopAll().then(() => settle.reject(error));
        return;
      }
      // every message's permanent failure was settled in the chunk; what escapes is transient,
      // or permanent in a step that belongs to no message: both retried (and escalated)
      retryLater(topic, partition, Number(chunk[0]!.offset), error);
    }
  }

  /** Per lane, the chunk after the one being applied, being decoded meanwhile (chunk.ts `decodeAhead`). */
  const decodingAhead = new WeakMap<
    Lane,
    { first: KafkaMessage; count: number; decoded: Promise<Decoded<T>[]> }
  >();
  function decodeNextAhead(lane: Lane, applying: number) {
    const next = lane.peek(applying + maxBatchSize).slice(applying);
    if (next.length === 0) return;
    const decoded = decodeAhead(chunkDeps.decode, lane.topic, lane.partition, next);
    // awaited by the chunk that uses it; one that never comes (the lane was cleared) drops it
    decoded.catch(() => undefined);
    decodingAhead.set(lane, { first: next[0]!, count: next.length, decoded });
  }

  const lastLagCommit = new Map<string, number>();
  /**
   * Kafka's committed offset is only for lag tooling; PostgreSQL is the source of truth. At most
   * once a second per partition while it has more to apply, and not awaited.
   */
  function commitForLagTooling(topic: string, partition: number, next: number, idle: boolean) {
    const now = Date.now();
    if (!idle && now - (lastLagCommit.get(tpKey(topic, partition)) ?? 0) < 1_000) return;
    lastLagCommit.set(tpKey(topic, partition), now);
    void consumer
      .commitOffsets([{ topic, partition, offset: String(next) }])
      .catch(() => undefined);
  }

  /** What the rebuild's gate let a lane apply next, decided before the lane takes a slot. */
  const admittedByGate = new Map<Lane, KafkaMessage[]>();
  const lanes = new PartitionLanes({
    concurrency: options.concurrency ?? 1,
    highWater: 4 * maxBatchSize,
    pause: (topic, partition) => consumer.pause([{ topic, partitions: [partition] }]),
    resume: (topic, partition) => consumer.resume([{ topic, partitions: [partition] }]),
    applyNext,
    // the gate waits for other partitions' next records: outside a slot, so they can arrive
    beforeSlot: options.gate
      ? async (lane) => {
          let admitted: KafkaMessage[] | undefined;
          while (admitted === undefined && lane.size > 0 && !stopping)
            admitted = await options.gate!.admit(
              lane.topic,
              lane.partition,
              lane.peek(maxBatchSize),
            );
          if (admitted) admittedByGate.set(lane, admitted);
        }
      : undefined,
    onError: (error) => {
      logger.fatal({ err: error }, 'a partition lane failed');
      void stopAll().then(() => settle.reject(error));
    },
  });

  async function eachBatch({ batch, resolveOffset, isRunning, isStale }: EachBatchPayload) {
    const { topic, partition } = batch;
    // a batch fetched before a seek (kafkajs drops it itself once the seek is applied) or while
    // the lane is blocked is not queued and not resolved: the next fetch starts where the seek says
    if (!isRunning() || isStale() || stopping || lanes.isBlocked(topic, partition)) return;
    resolveOffset(batch.lastOffset());
    lanes.push(topic, partition, batch.messages, batch.highWatermark);
  }

  async function onAssignment(assignment: Record<string, number[]>) {
    const owned = (topic: string, partition: number) =>
      assignment[topic]?.includes(partition) ?? false;
    escalation.retain(owned);
    halts.retain(owned);
    for (const [topic, partitions] of Object.entries(assignment)) {
      const stored = await store.storedOffsets(pool, group, topic);
      for (const partition of partitions) {
        const offset = await guard.assigned(topic, partition, stored.get(partition));
        consumer.seek({ topic, partition, offset: String(offset) });
        lanes.clear(topic, partition);
      }
    }
  }

  const pruning = startPruning({
    pool,
    group,
    logger,
    resendWindowMs: failure.ledgerResendWindowMs,
    everyMs: options.pruneEveryMs ?? 10 * 60_000,
    service: options.retention,
  });
  const drainTimer = setInterval(() => {
    void drainDiscarded();
    redriveOwned();
  }, options.haltCheckMs ?? 5_000).unref();
  async function stopAll() {
    if (stopping) return;
    stopping = true;
    clearInterval(drainTimer);
    clearTimeout(rerun);
    await lanes.stop();
    await redriving;
    await pruning.stop();
    halts.stop();
    escalation.stop();
    await consumer.disconnect().catch(() => undefined);
    await relay.stop().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    const assignment = event.payload.memberAssignment as Record<string, number[]>;
    logger.info({ group, assignment }, 'partitions assigned');
    owned = assignment;
    lanes.reassign((topic, partition) => assignment[topic]?.includes(partition) ?? false);
    // kafkajs does not await this listener; the offset guard in each chunk covers the race
    onAssignment(assignment).catch((error: unknown) =>
      logger.warn({ err: error }, 'could not seek to stored offsets; the offset guard will'),
    );
  });
  // partitions may be given away: stop applying what was fetched for them (a chunk being applied
  // finishes; the offset guard settles it with the next owner)
  consumer.on(consumer.events.REBALANCING, () => lanes.reassign(() => true));
  // kafkajs runs the consumer again after a crash it calls retriable; one it does not, but whose
  // facts say the broker's trouble (no group coordinator found in time), is run again here, the
  // same way, so a slow broker never stops the service; any other ends it (`done` rejects)
  const runOptions = { autoCommit: false, eachBatchAutoResolve: false, eachBatch };
  consumer.on(consumer.events.CRASH, (event) => {
    const { error, restart } = event.payload;
    const transient = !restart && classify(error).kind === 'transient';
    logger.error({ err: error, restart: restart || transient }, 'kafka consumer crashed');
    if (restart || stopping) return;
    if (!transient) {
      void stopAll().then(() => settle.reject(error));
      return;
    }
    rerun = setTimeout(() => {
      if (!stopping) void consumer.run(runOptions);
    }, CRASH_RERUN_MS);
  });

  await Promise.all([admin.connect(), options.relay === false ? undefined : relay.start()]);
  await consumer.connect();
  await consumer.subscribe({
    topics: options.topics.map((k) => options.topicNames[k]),
    fromBeginning: options.startFrom !== 'latest',
  });
  await consumer.run(runOptions);
  return {
    done,
    consumer,
    relay,
    check: async () => {
      const problems = [...halts.problems(), ...escalation.problems()];
      if (problems.length) throw new Error(problems.join('; '));
    },
    stop: async () => {
      await stopAll();
      settle.resolve();
    },
  };
}
