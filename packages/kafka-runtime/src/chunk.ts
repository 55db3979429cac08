import { withTransaction, type Pool, type PoolClient } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import type { KafkaMessage } from 'kafkajs';
import { deadLetteredBy, deadLetterEvent, rejectionCause } from './dead-letter.js';
import type { Decoded } from './decode.js';
import { discardedHeadOf, releaseDiscardedHeads } from './discard-marker.js';
import type { Handler } from './handler.js';
import { heldCount, holdMessages, takeSettleable } from './held.js';
import type { DlqLimiter } from './limits.js';
import type { Lookup } from './lookups.js';
import { HEADER } from './message.js';
import { recordIdentity, type OffsetGuard } from './offset-guard.js';
import { ParkedExpiredError, TransientError } from './errors.js';
import {
  applyInKeyOrder,
  applyOrdered,
  expiredParkedKeys,
  keyOf,
  parkedCounts,
  parkedRecords,
  unparkKeys,
  unparkMessages,
  type Settled,
} from './parking.js';
import { decideAction, decideRejection, type Policy, type ReferenceRules } from './policy.js';
import * as store from './store.js';

/**
 * One chunk of one partition in one PostgreSQL transaction, its steps in order: decode
 * (decode.ts); lock the partition's offset row and guard the offsets (offset-guard.ts); claim,
 * look up and apply with isolation (apply-isolated.ts), on an ordered topic parking the keys of
 * dead-lettered messages and draining released ones (parking.ts); check the dead-letter limits (a
 * rejected message counts as applied; parked, held and drained ones do not count); write the outbox
 * row (emitted events, dead letters and the DLQ copies of rejections their policy asks for,
 * dead-letter.ts); record failures and rejections; store held messages (held.ts); store the next offset with the identity of the
 * last record; COMMIT; then count the limits and the metrics.
 *
 * Blocks on: the registry (decode), PostgreSQL, the handler, the Kafka admin client (guard).
 * Throws: transient errors (the consumer retries the chunk), `DlqLimitExceeded` (the consumer
 * stops; the chunk is not committed), and a permanent error of a step that belongs to no message
 * (the offset row, the outbox or failure writes), which cannot be set aside: the consumer retries
 * it like a transient one, so that it escalates.
 * Rebalance: the offset row lock makes two members owning the partition around a rebalance apply
 * one after the other; the guard drops what the other applied.
 */

export type ChunkOutcome =
  /** `held`: the chunk held messages for an entity not yet announced (held.ts). */
  | { kind: 'applied'; wroteOutbox: boolean; held?: boolean }
  | { kind: 'seek'; to: number; repeated: boolean }
  | { kind: 'halted'; reason: string };

export type RuntimeHookPoint = 'consumer:before-commit' | 'consumer:after-dead-letter';

export function chunkApplier<T>(deps: {
  group: string;
  pool: Pool;
  logger: Logger;
  decode: (topic: string, partition: number, record: KafkaMessage) => Promise<Decoded<T>>;
  guard: OffsetGuard;
  limiterOf: (topic: string, partition: number) => DlqLimiter;
  handle: Handler<T>;
  lookups: Lookup<T>[];
  policy: Policy;
  references: ReferenceRules;
  /** Whether the topic keeps its keys' order through failures (parking.ts). */
  ordered: (topic: string) => boolean;
  maxParkedMessages: number;
  /** How long a key may stay parked behind the same head before its parked messages are dead-lettered. */
  parkedDeadlineMs: number;
  hook?: (point: RuntimeHookPoint) => void;
}) {
  const { group, pool, logger, guard } = deps;

  /** `decodedAhead`: the records already being decoded (`decodeAhead`), in their order. */
  return async function applyChunk(
    topic: string,
    partition: number,
    records: KafkaMessage[],
    decodedAhead?: Promise<Decoded<T>[]>,
  ): Promise<ChunkOutcome> {
    const started = process.hrtime.bigint();
    const decoded = await (decodedAhead ?? decodeChunk(deps, topic, partition, records));
    const limiter = deps.limiterOf(topic, partition);
    const first = Number(records[0]!.offset);
    const last = records.at(-1)!;
    // a chunk that follows the last one on a verified partition moves the offset row in the
    // statement that locks it, sent with BEGIN: one round trip for both
    const advance = guard.isVerified(topic, partition)
      ? { from: first, next: Number(last.offset) + 1, lastRecordId: recordIdentity(last) }
      : undefined;
    const opening = store.lockOffsetStatement(group, topic, partition, advance);
    const result = await withTransaction(
      pool,
      async (tx, opened) => {
        const stored = await store.lockOffset(tx, group, topic, partition, opened);
        if (stored.haltedReason !== null)
          return { kind: 'halted' as const, reason: stored.haltedReason };
        const decision = await guard.check(topic, partition, stored, records);
        if (stored.advanced && (decision.action !== 'apply' || decision.from !== first))
          // the partition was assigned again meanwhile and is verified anew: not this chunk's to move
          throw new TransientError(
            `offset ${first} of ${topic}:${partition} moved while its chunk began; retrying`,
          );
        if (decision.action === 'seek') return { kind: 'seek' as const, ...decision };
        if (decision.action === 'halt') {
          await store.haltPartition(tx, group, topic, partition, decision.reason);
          return { kind: 'halted' as const, reason: decision.reason };
        }
        if (decision.gone)
          logger.warn(
            { topic, partition, ...decision.gone },
            'offsets below the log start were never applied (retention deleted them); continuing',
          );
        // A replayed dead letter goes back to its source topic, which every group reads; it is the
        // replay of the group that dead-lettered it. The others applied that message when it first came
        // (their ledgers forget it after the re-send window), so for them it is a duplicate.
        let othersReplays = 0;
        // an operator's discard of one of this group's parked heads: a command, not a message; one
        // naming another group (or none) is not this group's to act on
        const discards: KafkaMessage[] = [];
        const fresh = decoded.filter((d) => {
          if (d.offset < decision.from) return false;
          const owner = deadLetteredBy(d.record, d.headers);
          const discard = discardedHeadOf(d.record, d.headers) !== undefined;
          if (discard && owner === group) discards.push(d.record);
          else if (discard || (owner !== undefined && owner !== group)) othersReplays++;
          else return true;
          return false;
        });
        // nothing new, and no offset to move (a chunk of others' replays still moves it)
        if (fresh.length === 0 && othersReplays === 0 && discards.length === 0)
          return { kind: 'applied' as const, wroteOutbox: false };
        // released before applying, so this chunk drains the keys (parking.ts)
        if (discards.length > 0 && deps.ordered(topic))
          await releaseDiscardedHeads(tx, { group, topic }, discards);

        const { own, drained, parked } = deps.ordered(topic)
          ? await applyOrdered(tx, fresh, orderedSteps(deps, topic, partition))
          : {
              own: await applyInKeyOrder(
                tx,
                fresh,
                orderedSteps(deps, topic, partition).steps,
                false,
              ),
            };
        // throws when this chunk's own messages would cross a limit, before anything is committed;
        // parked and drained messages do not count
        const window = limiter.check(limiterOutcomes(fresh, own));
        const outcome = await writeOutcomes(
          deps,
          tx,
          topic,
          partition,
          drained ? [own, drained] : [own],
        );
        if (!stored.advanced)
          await store.storeOffset(
            tx,
            group,
            topic,
            partition,
            Number(last.offset) + 1,
            recordIdentity(last),
          );
        deps.hook?.('consumer:before-commit');
        return {
          kind: 'applied' as const,
          ...outcome,
          duplicates: outcome.duplicates + othersReplays,
          parked,
          window,
        };
      },
      opening,
    );
    if (result.kind !== 'applied') return result;
    guard.applied(topic, partition);
    const held = 'held' in result && result.held.length > 0;
    if (!('window' in result) || !result.window)
      return { kind: 'applied', wroteOutbox: result.wroteOutbox, held };

    // committed: count the limits, the metrics and the logs
    limiter.apply(result.window);
    countOutcomes(deps, topic, partition, result);
    metrics.batchSeconds.observe({ group }, Number(process.hrtime.bigint() - started) / 1e9);
    return { kind: 'applied', wroteOutbox: result.wroteOutbox, held };
  };
}

export type ChunkDeps<T> = Parameters<typeof chunkApplier<T>>[0];

/**
 * What the dead-letter limits count of a chunk's own messages, in offset order: true for an applied
 * one, false for a failed one (duplicates, held and parked ones do not count). With no failure (the
 * usual chunk), as many trues as applied messages, without a set of them.
 */
function limiterOutcomes<T>(fresh: Decoded<T>[], own: Settled<T>): boolean[] {
  if (own.failures.length === 0) return new Array<boolean>(own.applied.length).fill(true);
  const ownFailed = new Set(own.failures.map((f) => f.d));
  const ownApplied = new Set(own.applied);
  return fresh
    .filter((d) => ownFailed.has(d) || (d.message && ownApplied.has(d.message)))
    .map((d) => !ownFailed.has(d));
}

/**
 * Step 1 of a chunk decoded while the chunk before it applies: in slices, each after the event loop
 * took its turn, so the other chunk's round trips are answered between them and PostgreSQL's time
 * and this CPU work overlap. Rejects with a transient error only; the caller awaits it (or drops it).
 */
export async function decodeAhead<T>(
  decode: ChunkDeps<T>['decode'],
  topic: string,
  partition: number,
  records: KafkaMessage[],
): Promise<Decoded<T>[]> {
  const decoded: Decoded<T>[] = [];
  for (let i = 0; i < records.length; i += DECODE_SLICE) {
    await new Promise((resolve) => setImmediate(resolve));
    const slice = records.slice(i, i + DECODE_SLICE);
    decoded.push(...(await Promise.all(slice.map((r) => decode(topic, partition, r)))));
  }
  return decoded;
}

/** Records decoded between two turns of the event loop when decoding ahead. */
const DECODE_SLICE = 200;

/** Step 1 of a chunk, every record of it: rejects with a transient error only (decode.ts). */
const decodeChunk = <T>(
  deps: Pick<ChunkDeps<T>, 'decode'>,
  topic: string,
  partition: number,
  records: KafkaMessage[],
): Promise<Decoded<T>[]> => Promise.all(records.map((r) => deps.decode(topic, partition, r)));

/**
 * Drains the keys of an ordered topic's partition that an operator's discard released when no chunk
 * comes to do it (an idle partition): a transaction of its own under the partition's offset row
 * lock, which it does not move. Returns whether it wrote to the outbox.
 */
export function releasedKeyDrainer<T>(deps: ChunkDeps<T>) {
  return async function drainReleased(topic: string, partition: number): Promise<boolean> {
    const outcome = await withTransaction(deps.pool, async (tx) => {
      const stored = await store.lockOffset(tx, deps.group, topic, partition);
      if (stored.haltedReason !== null) return undefined;
      const { drained, parked } = await applyOrdered(tx, [], orderedSteps(deps, topic, partition));
      if (!drained) return undefined;
      return { ...(await writeOutcomes(deps, tx, topic, partition, [drained])), parked };
    });
    if (!outcome) return false;
    countOutcomes(deps, topic, partition, outcome);
    return outcome.wroteOutbox;
  };
}

/**
 * Dead-letters, in order and with reason `parked_expired`, the parked messages of a partition's keys
 * parked behind the same head longer than `parkedDeadlineMs` (`SHOAL_PARKED_DEADLINE_SECONDS`, the
 * dead-letter topics' retention: by then nothing can replay the head), and releases the keys, so a
 * later message of the key applies at once. A parked row that expires leaves through the
 * dead-letter path, never deleted unapplied. A transaction of its own under the partition's offset
 * row lock, which it does not move; expired messages do not count toward the dead-letter limits.
 * Returns whether it wrote to the outbox.
 */
export function parkedExpirer<T>(deps: ChunkDeps<T>) {
  return async function expireParked(topic: string, partition: number): Promise<boolean> {
    const { group } = deps;
    const outcome = await withTransaction(deps.pool, async (tx) => {
      const stored = await store.lockOffset(tx, group, topic, partition);
      if (stored.haltedReason !== null) return undefined;
      const where = { group, topic, partition };
      const keys = await expiredParkedKeys(tx, where, deps.parkedDeadlineMs);
      if (keys.length === 0) return undefined;
      const headOf = new Map(keys.map((k) => [k.key, k]));
      const rows = await parkedRecords(
        tx,
        group,
        topic,
        keys.map((k) => k.key),
      );
      const items = await Promise.all(rows.map((r) => deps.decode(topic, r.partition, r.record)));
      const failures = items.map((d) => {
        const error = new ParkedExpiredError(headOf.get(keyOf(d)!)!, d.offset);
        return {
          d,
          failure: { reason: error.reason, error },
          action: decideAction(deps.policy, error.reason),
        };
      });
      const expired: Settled<T> = {
        applied: [],
        duplicates: 0,
        emitted: [],
        rejected: [],
        failures,
        held: [],
        heldBack: [],
      };
      const written = await writeOutcomes(deps, tx, topic, partition, [expired]);
      await unparkMessages(
        tx,
        rows.map((r) => r.seq),
      );
      await unparkKeys(
        tx,
        group,
        topic,
        keys.map((k) => k.key),
      );
      const counts = await parkedCounts(tx, group, topic);
      return { ...written, parked: { keys: counts.keys, messages: counts.messages } };
    });
    if (!outcome) return false;
    countOutcomes(deps, topic, partition, outcome);
    return outcome.wroteOutbox;
  };
}

const REDRIVE_CHUNK = 500;

/**
 * Re-drives a partition's held messages that can be settled now (held.ts `takeSettleable`: their
 * entity announced or deleted, or their deadline passed) through the chunk's steps, oldest first, in
 * transactions of up to 500 under the partition's offset row lock, which it does not move. On an
 * ordered topic a held message heads its key, so applying it drains the key (parking.ts). Held
 * messages never count toward the dead-letter limits. Returns whether it wrote to the outbox.
 */
export function heldRedriver<T>(deps: ChunkDeps<T>) {
  return async function redriveHeld(topic: string, partition: number): Promise<boolean> {
    let wroteOutbox = false;
    for (;;) {
      const outcome = await withTransaction(deps.pool, async (tx) => {
        const stored = await store.lockOffset(tx, deps.group, topic, partition);
        if (stored.haltedReason !== null) return undefined;
        const where = { group: deps.group, topic, partition };
        const rows = await takeSettleable(tx, where, deps.lookups, REDRIVE_CHUNK);
        if (rows.length === 0) return undefined;
        const items = await Promise.all(
          rows.map(async ({ record, heldAt }) => {
            const d = await deps.decode(topic, partition, record);
            if (d.message) d.message.heldSince = heldAt;
            return d;
          }),
        );
        const o = orderedSteps(deps, topic, partition);
        const { own, drained, parked } = deps.ordered(topic)
          ? await applyOrdered(tx, items, o)
          : { own: await applyInKeyOrder(tx, items, o.steps, false) };
        const written = await writeOutcomes(
          deps,
          tx,
          topic,
          partition,
          drained ? [own, drained] : [own],
        );
        return { ...written, parked, taken: rows.length };
      });
      if (!outcome) return wroteOutbox;
      countOutcomes(deps, topic, partition, outcome);
      wroteOutbox ||= outcome.wroteOutbox;
      if (outcome.taken < REDRIVE_CHUNK) return wroteOutbox;
    }
  };
}

const orderedSteps = <T>(deps: ChunkDeps<T>, topic: string, partition: number) => ({
  group: deps.group,
  topic,
  partition,
  steps: {
    group: deps.group,
    lookups: deps.lookups,
    references: deps.references,
    handle: deps.handle,
    logger: deps.logger,
    policy: deps.policy,
  },
  decode: deps.decode,
  maxParkedMessages: deps.maxParkedMessages,
});

/**
 * What settled in a transaction, written in it: the outbox row (emitted events, dead letters, the
 * DLQ copies of rejections their policy asks for), the failures and the rejections.
 */
async function writeOutcomes<T>(
  deps: ChunkDeps<T>,
  tx: PoolClient,
  topic: string,
  partition: number,
  settled: Settled<T>[],
) {
  const { group } = deps;
  const applied = settled.flatMap((x) => x.applied);
  const duplicates = settled.reduce((n, x) => n + x.duplicates, 0);
  const emitted = settled.flatMap((x) => x.emitted);
  const failures = settled.flatMap((x) => x.failures);
  const held = settled.flatMap((x) => x.held);
  const rejections = settled
    .flatMap((x) => x.rejected)
    .map((r) => ({ ...r, action: decideRejection(deps.policy, r.reason) }));
  const deadLetters = [
    ...failures
      .filter((f) => f.action === 'dlq')
      .map((f) =>
        deadLetterEvent(
          f.d.record,
          { topic, partition, group, messageId: f.d.messageId },
          f.failure,
        ),
      ),
    ...rejections
      .filter((r) => r.action === 'dlq')
      .map((r) =>
        deadLetterEvent(
          r.record,
          { topic, partition, group, messageId: r.message.messageId },
          rejectionCause(r.reason, r.detail),
        ),
      ),
  ];
  await store.writeOutbox(
    tx,
    [
      ...emitted.map(({ source, id, event }) => ({
        eventId: id,
        topic: event.topic,
        key: event.key,
        payload: event.value,
        headers: {
          ...event.headers,
          ...(source.traceId ? { [HEADER.traceId]: source.traceId } : {}),
        },
      })),
      ...deadLetters,
    ],
    true,
  ); // ctx.emit validated each event; dead letters are produced as they are
  if (deadLetters.length) deps.hook?.('consumer:after-dead-letter');
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
      entityId: f.failure.entityId,
      action: f.action,
      errorClass: f.failure.error.name,
      errorMessage: f.failure.error.message,
    })),
  );
  await store.recordRejections(
    tx,
    group,
    rejections.map((r) => ({
      topic,
      partition,
      offset: r.message.offset,
      key: r.message.key,
      messageId: r.message.messageId,
      reason: r.reason,
      detail: r.detail,
      action: r.action,
    })),
  );
  await holdMessages(tx, { group, topic, partition }, held, deps.references);
  return {
    wroteOutbox: emitted.length + deadLetters.length > 0,
    applied: applied.length,
    duplicates,
    failures,
    rejections,
    held,
    heldNow: held.length > 0 ? await heldCount(tx, group, topic) : undefined,
  };
}

/** After COMMIT: the metrics and logs of what was written. */
function countOutcomes<T>(
  deps: ChunkDeps<T>,
  topic: string,
  partition: number,
  outcome: Awaited<ReturnType<typeof writeOutcomes<T>>> & {
    parked?: { keys: number; messages: number };
  },
) {
  const { group, logger } = deps;
  if (outcome.applied) metrics.processed.inc({ group, topic }, outcome.applied);
  if (outcome.duplicates) metrics.duplicates.inc({ group, topic }, outcome.duplicates);
  if (outcome.parked) {
    metrics.parkedKeys.set({ group, topic }, outcome.parked.keys);
    metrics.parkedMessages.set({ group, topic }, outcome.parked.messages);
  }
  if (outcome.heldNow !== undefined) metrics.heldMessages.set({ group, topic }, outcome.heldNow);
  for (const { d, hold } of outcome.held) {
    metrics.held.inc({ group, topic, entity: hold.entity });
    logger.info(
      {
        topic,
        partition,
        offset: d.offset,
        key: d.record.key?.toString(),
        messageId: d.messageId,
        entity: hold.entity,
        entityId: hold.id,
        heldSince: hold.since,
      },
      `message held: ${hold.entity} ${hold.id} not announced yet`,
    );
  }
  for (const r of outcome.rejections) {
    metrics.rejected.inc({ group, topic, reason: r.reason });
    logger.info(
      {
        topic,
        partition,
        offset: r.message.offset,
        key: r.message.key,
        messageId: r.message.messageId,
        traceId: r.message.traceId,
        rejection: r.reason,
        detail: r.detail,
        action: r.action,
      },
      'message rejected',
    );
  }
  for (const { d, failure, action } of outcome.failures) {
    metrics.failed.inc({
      group,
      topic,
      reason: failure.reason,
      entity: failure.entity ?? '',
      action,
    });
    logger.warn(
      {
        topic,
        partition,
        offset: d.offset,
        key: d.record.key?.toString(),
        messageId: d.messageId,
        traceId: d.message?.traceId,
        reason: failure.reason,
        entity: failure.entity,
        entityId: failure.entityId,
        action,
        err: failure.error,
      },
      action === 'dlq' ? 'message dead-lettered' : 'message skipped',
    );
  }
}
