import { storableText, type PoolClient } from '@shoal/db';
import type { KafkaMessage } from 'kafkajs';
import {
  applyIsolated,
  type IsolatedResult,
  type IsolationSteps,
  type Rejected,
} from './apply-isolated.js';
import { DlqLimitExceeded } from './limits.js';
import type { Failure } from './dead-letter.js';
import type { Decoded } from './decode.js';
import type { Hold } from './lookups.js';
import type { Message } from './message.js';
import { decideAction, type Action, type Policy } from './policy.js';

/**
 * Order survives failure, per key (DESIGN.md semantics 6). On an ordered topic a message that is
 * dead-lettered, or held for an unknown entity (held.ts), parks its key in the same transaction: the key's later messages, even in the same
 * chunk, are stored whole in `parked_messages` instead of being applied, and the offset moves on, so
 * other keys never wait. When the head (the dead-lettered message) is applied after a replay, or
 * skipped, or discarded by an operator (discard-marker.ts), the key's parked messages are applied
 * in order (in that chunk, or the partition's next chunk after a discard); a failure among them becomes
 * the new head and the rest stay parked. Parked messages never count toward the dead-letter limits.
 *
 * Blocks on: PostgreSQL (the chunk's transaction), the handler, the registry (re-decoding drained rows).
 * Throws: transient errors only, leaving the transaction for the caller to roll back.
 * Rebalance: holds no state; parked rows are keyed by group, topic and key, under the partition's
 * offset row lock that the chunk holds.
 */

export interface Settled<T> {
  applied: Message<T>[];
  duplicates: number;
  emitted: IsolatedResult<T>['emitted'];
  rejected: (Rejected<T> & { record: KafkaMessage })[];
  failures: { d: Decoded<T>; failure: Failure; action: Action }[];
  /** Waiting for an unknown entity (held.ts stores them); on an ordered topic each heads its key. */
  held: { d: Decoded<T>; hold: Hold }[];
  /** Messages after a dead-lettered or held one of their key: not applied, to be parked (or left parked). */
  heldBack: Decoded<T>[];
}

export interface ApplySteps<T> extends IsolationSteps<T> {
  policy: Policy;
}

/** The key as stored and compared (text, NUL escaped as everywhere in Shoal); null never parks. */
export const keyOf = (d: Decoded<unknown>) => storableText(d.record.key?.toString() ?? null);

/**
 * Applies `items` (in order) with isolation; on an ordered topic, holds back every item after a
 * dead-lettered one of the same key. A failure found while applying that had later items of its key
 * applied with it rolls back to a savepoint and re-applies without them (failures found so far are
 * kept, not re-run), until no dead-lettered message has a later message of its key applied.
 */
export async function applyInKeyOrder<T>(
  tx: PoolClient,
  items: Decoded<T>[],
  steps: ApplySteps<T>,
  ordered: boolean,
): Promise<Settled<T>> {
  const failed = new Map<Decoded<T>, { failure: Failure; action: Action }>();
  const decision = (failure: Failure) => ({
    failure,
    action: decideAction(steps.policy, failure.reason, failure.entity),
  });
  for (const d of items) if (d.failure) failed.set(d, decision(d.failure));
  const held = new Map<Decoded<T>, Hold>();
  const heldBack = new Set<Decoded<T>>();
  /** Holds back what follows a dead-lettered or held item of its key; true when it held back anything new. */
  const holdBehindHeads = () => {
    const parkedKeys = new Set<string>();
    let more = false;
    for (const d of items) {
      const key = keyOf(d);
      if (key === null || heldBack.has(d)) continue;
      if (parkedKeys.has(key)) {
        heldBack.add(d);
        failed.delete(d);
        held.delete(d);
        more = true;
      } else if (failed.get(d)?.action === 'dlq' || held.has(d)) parkedKeys.add(key);
    }
    return more;
  };
  if (ordered) holdBehindHeads();
  // set by the first run, in its claim's round trip
  let savepoint = ordered ? 'shoal_key_order' : undefined;
  // built once: a loop per message, not arrays of pairs (allocation is a fifth of the consumer's time)
  const byMessage = new Map<Message<T>, Decoded<T>>();
  for (const d of items) if (d.message) byMessage.set(d.message, d);
  for (;;) {
    const toApply: Message<T>[] = [];
    for (const d of items)
      if (d.message && !failed.has(d) && !held.has(d) && !heldBack.has(d)) toApply.push(d.message);
    const run = await applyIsolated(tx, toApply, steps, savepoint);
    savepoint = undefined;
    for (const [message, failure] of run.failed)
      failed.set(byMessage.get(message)!, decision(failure));
    for (const [message, hold] of run.held) held.set(byMessage.get(message)!, hold);
    if (ordered && holdBehindHeads()) {
      await tx.query('ROLLBACK TO SAVEPOINT shoal_key_order');
      continue;
    }
    // the savepoint is left to the COMMIT, as applyIsolated leaves its own: releasing it is a round
    // trip, and a later one of the same name (a drain) is the one a rollback then goes back to
    return {
      applied: run.applied,
      duplicates: run.duplicates,
      emitted: run.emitted,
      rejected: run.rejected.map((r) => ({ ...r, record: byMessage.get(r.message)!.record })),
      // in the items' order; nothing to walk when there is none (the usual chunk)
      failures:
        failed.size === 0
          ? []
          : items.flatMap((d) => {
              const f = failed.get(d);
              return f ? [{ d, ...f }] : [];
            }),
      held:
        held.size === 0
          ? []
          : items.flatMap((d) => (held.has(d) ? [{ d, hold: held.get(d)! }] : [])),
      heldBack: heldBack.size === 0 ? [] : items.filter((d) => heldBack.has(d)),
    };
  }
}

/**
 * A chunk of an ordered topic: messages of a parked key are parked behind its head (the head's own
 * replay is applied); the rest are applied in key order (`applyInKeyOrder`), a dead-lettered one
 * parking its key; a key whose head was applied (or skipped) or discarded drains: its parked messages
 * are applied in order, a dead-lettered one becoming the new head. `own` is what the chunk's own
 * messages came to (they count toward the dead-letter limits); `drained`, what parked ones did (they
 * do not). Throws `DlqLimitExceeded` (`max_parked_messages`) when the group would hold more parked
 * messages than `maxParkedMessages`, before anything commits.
 */
export async function applyOrdered<T>(
  tx: PoolClient,
  fresh: Decoded<T>[],
  o: {
    group: string;
    topic: string;
    partition: number;
    steps: ApplySteps<T>;
    decode: (topic: string, partition: number, record: KafkaMessage) => Promise<Decoded<T>>;
    maxParkedMessages: number;
  },
): Promise<{
  own: Settled<T>;
  drained?: Settled<T>;
  parked?: { keys: number; messages: number };
}> {
  const { group, topic, partition } = o;
  const keys = [...new Set(fresh.flatMap((d) => keyOf(d) ?? []))];
  const parked = await parkedKeysOf(tx, group, topic, partition, keys);
  const behindHead = (d: Decoded<T>) => {
    const key = keyOf(d);
    return key !== null && parked.has(key) && parked.get(key) !== storableText(d.messageId);
  };
  const own = await applyInKeyOrder(
    tx,
    fresh.filter((d) => !behindHead(d)),
    o.steps,
    true,
  );
  /** What heads its key: a dead-lettered message, or a held one. */
  const headsOf = (s: Settled<T>) => [
    ...s.failures
      .filter((f) => f.action === 'dlq' && keyOf(f.d) !== null)
      .map((f) => headOf(f.d, f.failure.reason)),
    ...s.held.filter((h) => keyOf(h.d) !== null).map((h) => headOf(h.d, 'held')),
  ];
  const heads = headsOf(own);
  const headFailed = new Set(heads.map((h) => h.d));
  const released = [...parked].flatMap(([key, head]) =>
    head === null ||
    fresh.some((d) => storableText(d.messageId) === head && keyOf(d) === key && !headFailed.has(d))
      ? [key]
      : [],
  );
  const newlyParked = [...fresh.filter(behindHead), ...own.heldBack].sort(
    (a, b) => a.offset - b.offset,
  );
  await parkKeys(tx, group, topic, partition, heads);
  await parkMessages(tx, group, topic, partition, newlyParked);

  let drained: Settled<T> | undefined;
  if (released.length > 0) {
    const rows = await parkedRecords(tx, group, topic, released);
    const items = await Promise.all(rows.map((r) => o.decode(topic, r.partition, r.record)));
    drained = await applyInKeyOrder(tx, items, o.steps, true);
    const stillParked = new Set(drained.heldBack);
    await unparkMessages(
      tx,
      rows.flatMap((r, i) => (stillParked.has(items[i]!) ? [] : [r.seq])),
    );
    const newHeads = headsOf(drained);
    await parkKeys(tx, group, topic, partition, newHeads);
    const headed = new Set(newHeads.map((h) => h.key));
    await unparkKeys(
      tx,
      group,
      topic,
      released.filter((k) => !headed.has(k)),
    );
  }
  if (heads.length === 0 && newlyParked.length === 0 && released.length === 0) return { own };
  const counts = await parkedCounts(tx, group, topic);
  if (newlyParked.length > 0 && counts.groupMessages > o.maxParkedMessages)
    throw new DlqLimitExceeded(
      'max_parked_messages',
      `${counts.groupMessages} messages parked behind dead-lettered heads, above ${o.maxParkedMessages}`,
    );
  return { own, drained, parked: { keys: counts.keys, messages: counts.messages } };
}

const headOf = <T>(d: Decoded<T>, reason: string) => ({
  d,
  key: keyOf(d)!,
  messageId: storableText(d.messageId),
  offset: d.offset,
  reason,
});

/** Parked keys among `keys`, and every key of the partition released by a discard: key → head message id (null: released). */
export async function parkedKeysOf(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  keys: string[],
): Promise<Map<string, string | null>> {
  const { rows } = await tx.query<{ message_key: string; head_message_id: string | null }>(
    `SELECT message_key, head_message_id FROM parked_keys
     WHERE consumer_group = $1 AND topic = $2
       AND (message_key = ANY($4::text[]) OR (partition = $3 AND head_message_id IS NULL))`,
    [group, topic, partition, keys],
  );
  return new Map(rows.map((r) => [r.message_key, r.head_message_id]));
}

/**
 * The keys of a partition parked behind the same head for longer than `deadlineMs` (by then the head's
 * dead letter has left its topic: nothing can replay it), with their head.
 */
export async function expiredParkedKeys(
  tx: PoolClient,
  where: { group: string; topic: string; partition: number },
  deadlineMs: number,
): Promise<{ key: string; messageId: string; reason: string; since: Date }[]> {
  const { rows } = await tx.query<{
    message_key: string;
    head_message_id: string;
    head_reason: string;
    parked_at: Date;
  }>(
    `SELECT message_key, head_message_id, head_reason, parked_at FROM parked_keys
     WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND head_message_id IS NOT NULL
       AND (parked_at < now() - $4 * interval '1 millisecond' OR expiry_requested_at IS NOT NULL)`,
    [where.group, where.topic, where.partition, deadlineMs],
  );
  return rows.map((r) => ({
    key: r.message_key,
    messageId: r.head_message_id,
    reason: r.head_reason,
    since: r.parked_at,
  }));
}

/** Partitions with keys parked behind the same head longer than `deadlineMs`. */
export async function partitionsWithExpiredKeys(
  pool: { query: PoolClient['query'] },
  group: string,
  deadlineMs: number,
): Promise<{ topic: string; partition: number }[]> {
  const { rows } = await pool.query<{ topic: string; partition: number }>(
    `SELECT DISTINCT topic, partition FROM parked_keys
     WHERE consumer_group = $1 AND head_message_id IS NOT NULL
       AND (parked_at < now() - $2 * interval '1 millisecond' OR expiry_requested_at IS NOT NULL)`,
    [group, deadlineMs],
  );
  return rows;
}

/** Partitions holding keys a discard released, which the consumer drains if no chunk comes first. */
export async function releasedPartitions(
  pool: { query: PoolClient['query'] },
  group: string,
): Promise<{ topic: string; partition: number }[]> {
  const { rows } = await pool.query<{ topic: string; partition: number }>(
    'SELECT DISTINCT topic, partition FROM parked_keys WHERE consumer_group = $1 AND head_message_id IS NULL',
    [group],
  );
  return rows;
}

/** Parks `heads`' keys (or moves a head on), each behind its dead-lettered message. */
export async function parkKeys(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  heads: { key: string; messageId: string; offset: number; reason: string }[],
): Promise<void> {
  if (heads.length === 0) return;
  await tx.query(
    `INSERT INTO parked_keys (consumer_group, topic, message_key, partition, head_message_id, head_offset, head_reason)
     SELECT $1, $2, k, $3::int, m, o, r FROM unnest($4::text[], $5::text[], $6::bigint[], $7::text[]) AS h(k, m, o, r)
     ON CONFLICT (consumer_group, topic, message_key) DO UPDATE SET partition = EXCLUDED.partition,
       head_message_id = EXCLUDED.head_message_id, head_offset = EXCLUDED.head_offset,
       head_reason = EXCLUDED.head_reason, parked_at = now(), expiry_requested_at = NULL`,
    [
      group,
      topic,
      partition,
      heads.map((h) => h.key),
      heads.map((h) => h.messageId),
      heads.map((h) => h.offset),
      heads.map((h) => h.reason),
    ],
  );
}

/** Stores `items` whole behind their parked keys, in order. */
export async function parkMessages<T>(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  items: Decoded<T>[],
): Promise<void> {
  if (items.length === 0) return;
  await tx.query(
    `INSERT INTO parked_messages (consumer_group, topic, partition, "offset", message_key, message_id,
       key_bytes, value_bytes, headers, record_timestamp)
     SELECT $1, $2, $3::int, o, k, m, kb, vb, h, t FROM unnest($4::bigint[], $5::text[], $6::text[],
       $7::bytea[], $8::bytea[], $9::json[], $10::text[]) WITH ORDINALITY AS p(o, k, m, kb, vb, h, t, n)
     ORDER BY n
     ON CONFLICT DO NOTHING`,
    [
      group,
      topic,
      partition,
      items.map((d) => d.offset),
      items.map((d) => keyOf(d)),
      items.map((d) => storableText(d.messageId)),
      items.map((d) => d.record.key ?? null),
      items.map((d) => d.record.value ?? null),
      items.map((d) => JSON.stringify(headersAsBase64(d.record))),
      items.map((d) => d.record.timestamp),
    ],
  );
}

/** Header values as base64 (they are bytes, and may hold what jsonb text cannot). */
export function headersAsBase64(record: KafkaMessage): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(record.headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) result[name] = Buffer.from(first).toString('base64');
  }
  return result;
}

/** The parked messages of `keys`, in the order they arrived, as the records they were. */
export async function parkedRecords(
  tx: PoolClient,
  group: string,
  topic: string,
  keys: string[],
): Promise<{ seq: string; partition: number; record: KafkaMessage }[]> {
  const { rows } = await tx.query<{
    seq: string;
    partition: number;
    offset: string;
    key_bytes: Buffer | null;
    value_bytes: Buffer | null;
    headers: Record<string, string>;
    record_timestamp: string;
  }>(
    `SELECT seq::text, partition, "offset"::text, key_bytes, value_bytes, headers, record_timestamp
     FROM parked_messages p WHERE consumer_group = $1 AND topic = $2 AND message_key = ANY($3::text[])
     ORDER BY p.seq`, // the column: a bare `seq` would sort the text output
    [group, topic, keys],
  );
  return rows.map((r) => ({ seq: r.seq, partition: r.partition, record: storedRecord(r) }));
}

/** A record as parked or held rows store it, back as kafkajs delivered it. */
export function storedRecord(r: {
  offset: string;
  key_bytes: Buffer | null;
  value_bytes: Buffer | null;
  headers: Record<string, string>;
  record_timestamp: string;
}): KafkaMessage {
  return {
    key: r.key_bytes,
    value: r.value_bytes,
    headers: Object.fromEntries(
      Object.entries(r.headers).map(([name, v]) => [name, Buffer.from(v, 'base64')]),
    ),
    offset: r.offset,
    timestamp: r.record_timestamp,
    attributes: 0,
  } as KafkaMessage;
}

export async function unparkMessages(tx: PoolClient, seqs: string[]): Promise<void> {
  if (seqs.length === 0) return;
  await tx.query('DELETE FROM parked_messages WHERE seq = ANY($1::bigint[])', [seqs]);
}

export async function unparkKeys(
  tx: PoolClient,
  group: string,
  topic: string,
  keys: string[],
): Promise<void> {
  if (keys.length === 0) return;
  await tx.query(
    'DELETE FROM parked_keys WHERE consumer_group = $1 AND topic = $2 AND message_key = ANY($3::text[])',
    [group, topic, keys],
  );
}

/** How much is parked for the group on `topic`, and in all (the ceiling is the group's). */
export async function parkedCounts(
  tx: PoolClient,
  group: string,
  topic: string,
): Promise<{ keys: number; messages: number; groupMessages: number }> {
  const { rows } = await tx.query<{ keys: number; messages: number; group_messages: number }>(
    `SELECT (SELECT count(*)::int FROM parked_keys WHERE consumer_group = $1 AND topic = $2) AS keys,
            (SELECT count(*)::int FROM parked_messages WHERE consumer_group = $1 AND topic = $2) AS messages,
            (SELECT count(*)::int FROM parked_messages WHERE consumer_group = $1) AS group_messages`,
    [group, topic],
  );
  return {
    keys: rows[0]!.keys,
    messages: rows[0]!.messages,
    groupMessages: rows[0]!.group_messages,
  };
}

/**
 * The discard of a parked key's head (an operator's discard marker, discard-marker.ts, applied in
 * the chunk's transaction): the key is released, and its parked messages apply in order in that
 * chunk (or, from a transaction of its own, on the partition's next chunk or drain). With
 * `headMessageId`, only while that message still heads the key. Returns the discarded head's
 * message id and how many messages wait behind it; undefined when the key is not parked behind
 * (that) head.
 */
export async function discardParkedHead(
  tx: PoolClient,
  target: { group: string; topic: string; key: string; headMessageId?: string },
): Promise<{ headMessageId: string; parkedMessages: number } | undefined> {
  const { rows } = await tx.query<{ head_message_id: string }>(
    `WITH head AS (
       SELECT head_message_id FROM parked_keys
       WHERE consumer_group = $1 AND topic = $2 AND message_key = $3 AND head_message_id IS NOT NULL
         AND ($4::text IS NULL OR head_message_id = $4)
       FOR UPDATE)
     UPDATE parked_keys p SET head_message_id = NULL, head_offset = NULL, head_reason = NULL FROM head
     WHERE p.consumer_group = $1 AND p.topic = $2 AND p.message_key = $3
     RETURNING head.head_message_id`,
    [target.group, target.topic, target.key, target.headMessageId ?? null],
  );
  if (rows.length === 0) return undefined;
  const { rows: count } = await tx.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM parked_messages WHERE consumer_group = $1 AND topic = $2 AND message_key = $3',
    [target.group, target.topic, target.key],
  );
  return { headMessageId: rows[0]!.head_message_id, parkedMessages: count[0]!.n };
}

/**
 * Asks the runtime's parked expirer to expire the parked keys named (consumer group, topic, key) at
 * its next pass: it dead-letters their parked messages in order (`parked_expired`), as at the parked deadline: an
 * operator's orphan cleanup, applied by the owning service as a command. Only keys still parked
 * behind a head; returns each as it was.
 */
export async function expireParkedNow(
  tx: PoolClient,
  keys: { group: string; topic: string; key: string }[],
): Promise<{ group: string; topic: string; key: string; record: Record<string, unknown> }[]> {
  const { rows } = await tx.query<{
    consumer_group: string;
    topic: string;
    message_key: string;
    record: Record<string, unknown>;
  }>(
    `WITH was AS (
       SELECT k.* FROM parked_keys k
       JOIN unnest($1::text[], $2::text[], $3::text[]) AS n(g, t, m)
         ON (k.consumer_group, k.topic, k.message_key) = (n.g, n.t, n.m)
       WHERE k.head_message_id IS NOT NULL FOR UPDATE OF k)
     UPDATE parked_keys k SET expiry_requested_at = coalesce(k.expiry_requested_at, now()) FROM was
     WHERE (k.consumer_group, k.topic, k.message_key) = (was.consumer_group, was.topic, was.message_key)
     RETURNING k.consumer_group, k.topic, k.message_key, to_jsonb(was) AS record`,
    [keys.map((k) => k.group), keys.map((k) => k.topic), keys.map((k) => k.key)],
  );
  return rows.map((r) => ({
    group: r.consumer_group,
    topic: r.topic,
    key: r.message_key,
    record: r.record,
  }));
}
