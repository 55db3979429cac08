import { sqlLiteral, type PoolClient } from '@shoal/db';
import type { QueryResult } from 'pg';
import type { Action, RejectionAction } from './policy.js';

/** The runtime's tables (packages/db/migrations): offsets (and their resets), the processed-id ledger, outbox, failures, rejections. Their retention: retention.ts. */

/** A partition's row in `consumer_offsets`. */
export interface StoredOffset {
  /** The next offset to apply; undefined when nothing was ever applied. */
  next: number | undefined;
  /** The identity of the record at next - 1 (see `recordIdentity`); null when unknown. */
  lastRecordId: string | null;
  /** Why the partition is halted (an offset mismatch waiting for an operator's reset); null when it is not. */
  haltedReason: string | null;
}

/** A chunk that continues exactly where the partition's stored offset is: where it moves it. */
export interface Advance {
  /** The chunk's first offset: the offset row moves only when its next offset is this one. */
  from: number;
  next: number;
  lastRecordId: string;
}

const OFFSET_ROW = `SELECT next_offset, last_record_id,
         CASE WHEN halted_at IS NOT NULL THEN coalesce(halted_reason, 'halted') END AS halted_reason
  FROM consumer_offsets`;

/**
 * The statement that locks the partition's offset row (`lockOffset`), to send with BEGIN
 * (`withTransaction`'s `first`). With `advance`, the same statement also stores the chunk's next
 * offset when the row's next offset is `advance.from` and the partition is not halted (the common
 * case: one chunk after another), and says so (`advanced`); it returns the row as it was. Undefined
 * when a value cannot be written into the statement's text: `lockOffset` then locks on its own.
 */
export function lockOffsetStatement(
  group: string,
  topic: string,
  partition: number,
  advance?: Advance,
): string | undefined {
  const [g, t, p] = [sqlLiteral(group), sqlLiteral(topic), sqlLiteral(partition)];
  const identity = advance && sqlLiteral(advance.lastRecordId);
  if (g === undefined || t === undefined || (advance && identity === undefined)) return undefined;
  const row = `consumer_group = ${g} AND topic = ${t} AND partition = ${p}`;
  if (!advance) return `${OFFSET_ROW} WHERE ${row} FOR UPDATE`;
  return `WITH locked AS (${OFFSET_ROW} WHERE ${row} FOR UPDATE),
  moved AS (UPDATE consumer_offsets SET next_offset = ${sqlLiteral(advance.next)}, last_record_id = ${identity}, updated_at = now()
            WHERE ${row} AND EXISTS (SELECT 1 FROM locked WHERE next_offset = ${sqlLiteral(advance.from)} AND halted_reason IS NULL)
            RETURNING 1)
  SELECT locked.*, EXISTS (SELECT 1 FROM moved) AS advanced FROM locked`;
}

type OffsetRow = {
  next_offset: number;
  last_record_id: string | null;
  halted_reason: string | null;
  advanced?: boolean;
};

/**
 * Locks the partition's offset row for the rest of the transaction (two members briefly owning one
 * partition around a rebalance apply one after the other) and returns it as it was before this
 * transaction. `opened` is the result of `lockOffsetStatement` when it was sent with BEGIN; the
 * row is read (and made, the first time) here otherwise, or when that found none.
 */
export async function lockOffset(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  opened?: QueryResult,
): Promise<StoredOffset & { advanced: boolean }> {
  const select = () =>
    tx.query<OffsetRow>(
      `${OFFSET_ROW} WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE`,
      [group, topic, partition],
    );
  let rows = (opened?.rows as OffsetRow[] | undefined) ?? (await select()).rows;
  if (rows.length === 0) {
    await tx.query(
      'INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, -1) ON CONFLICT DO NOTHING',
      [group, topic, partition],
    );
    ({ rows } = await select());
  }
  const row = rows[0]!;
  return {
    next: row.next_offset < 0 ? undefined : row.next_offset,
    lastRecordId: row.last_record_id,
    haltedReason: row.halted_reason,
    advanced: row.advanced === true,
  };
}

/** Stores the next offset to apply and the identity of the record just before it. */
export async function storeOffset(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  next: number,
  lastRecordId: string,
): Promise<void> {
  await tx.query(
    'UPDATE consumer_offsets SET next_offset = $4, last_record_id = $5, updated_at = now() WHERE consumer_group = $1 AND topic = $2 AND partition = $3',
    [group, topic, partition, next, lastRecordId],
  );
}

/** Where the group is in each partition of `topic` that it ever applied something of. */
export async function storedOffsets(
  pool: { query: PoolClient['query'] },
  group: string,
  topic: string,
): Promise<Map<number, { next: number; lastRecordId: string | null }>> {
  const { rows } = await pool.query<{
    partition: number;
    next_offset: number;
    last_record_id: string | null;
  }>(
    'SELECT partition, next_offset, last_record_id FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND next_offset >= 0',
    [group, topic],
  );
  return new Map(
    rows.map((r) => [r.partition, { next: r.next_offset, lastRecordId: r.last_record_id }]),
  );
}

/** Halts the partition: the consumer applies nothing there until an operator's reset clears it. */
export async function haltPartition(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  reason: string,
): Promise<void> {
  await tx.query(
    'UPDATE consumer_offsets SET halted_at = now(), halted_reason = $4 WHERE consumer_group = $1 AND topic = $2 AND partition = $3',
    [group, topic, partition, reason],
  );
}

/** Whether the partition is still halted (the halt watcher asks every few seconds). */
export async function isHalted(
  pool: { query: PoolClient['query'] },
  group: string,
  topic: string,
  partition: number,
): Promise<boolean> {
  const { rows } = await pool.query(
    'SELECT 1 FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND halted_at IS NOT NULL',
    [group, topic, partition],
  );
  return rows.length > 0;
}

/**
 * The operators' reset (`shoal offsets reset`), in the caller's transaction: records who moved the
 * partition from where to where and why in `offset_resets`, sets the next offset, forgets the last
 * record's identity and clears a halt. A halted consumer notices within seconds and resumes at
 * `to`; a running one seeks there on its next batch.
 */
export async function resetOffset(
  tx: PoolClient,
  reset: {
    group: string;
    topic: string;
    partition: number;
    to: number;
    actor: string;
    reason: string;
  },
): Promise<{ fromOffset: number | null; resetId: number }> {
  const { group, topic, partition, to, actor, reason } = reset;
  const { rows } = await tx.query<{ next_offset: number }>(
    'SELECT next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE',
    [group, topic, partition],
  );
  const from = rows[0] && rows[0].next_offset >= 0 ? rows[0].next_offset : null;
  const { rows: audit } = await tx.query<{ id: number }>(
    `INSERT INTO offset_resets (consumer_group, topic, partition, from_offset, to_offset, actor, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
    [group, topic, partition, from, to, actor, reason],
  );
  await tx.query(
    `INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
     ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,
       last_record_id = NULL, halted_at = NULL, halted_reason = NULL, updated_at = now()`,
    [group, topic, partition, to],
  );
  return { fromOffset: from, resetId: audit[0]!.id };
}

/** What an array literal or a string literal escapes in an id. */
const ESCAPED = /[\\"']/;

/**
 * `sqlLiteral(ids)`, without its escaping pass over every character when no id has anything to
 * escape (ids are usually `<kind>:<uuid>`): the same text, built by one join.
 */
function textArrayLiteral(ids: string[]): string | undefined {
  if (ids.length > 0) {
    const all = ids.join('');
    if (!ESCAPED.test(all) && !all.includes('\u0000')) return `'{"${ids.join('","')}"}'`;
  }
  return sqlLiteral(ids);
}

/**
 * Enters `ids` in the processed ledger and returns those that were not applied before: the messages
 * this transaction may apply. An id the ledger holds as dead-lettered is a replay of its dead letter:
 * it is claimed too, and becomes `replayed` (kept as long as the dead letters, so a second replay is a
 * duplicate). An id another member is entering concurrently waits for its transaction and then counts
 * as processed. Entered in id order (the statement's ORDER BY: sorting them here too cost a twentieth
 * of the consumer's time), so two members claiming overlapping ids cannot deadlock. One statement when no
 * id is known (the hot path), which answers with the ids it did not enter (none, usually), not the
 * ones it did; a second only for the ids already there. `savepoints`, in order, are set first, in the
 * same round trip as the claim when the ids can be written into its text.
 */
export async function claimMessageIds(
  tx: PoolClient,
  group: string,
  ids: string[],
  savepoints: string[] = [],
): Promise<Set<string>> {
  const unique = [...new Set(ids)];
  const claim = (g: string, list: string) =>
    `WITH input AS (SELECT unnest(${list}::text[]) AS message_id),
     entered AS (INSERT INTO processed_messages (consumer_group, message_id)
                 SELECT ${g}, message_id FROM input ORDER BY message_id ON CONFLICT DO NOTHING RETURNING message_id)
     SELECT message_id FROM input EXCEPT SELECT message_id FROM entered`;
  const [g, list] = [sqlLiteral(group), textArrayLiteral(unique)];
  let known: { message_id: string }[];
  if (savepoints.length && g !== undefined && list !== undefined) {
    const results = (await tx.query(
      `${savepoints.map((name) => `SAVEPOINT ${name}; `).join('')}${unique.length ? claim(g, list) : 'SELECT NULL::text AS message_id WHERE false'}`,
    )) as unknown as QueryResult<{ message_id: string }>[];
    known = results[savepoints.length]!.rows;
  } else {
    for (const name of savepoints) await tx.query(`SAVEPOINT ${name}`);
    if (unique.length === 0) return new Set();
    known = (await tx.query<{ message_id: string }>(claim('$1', '$2'), [group, unique])).rows;
  }
  if (known.length === 0) return new Set(unique);
  const { rows: replayed } = await tx.query<{ message_id: string }>(
    `UPDATE processed_messages SET kind = 'replayed', processed_at = now()
     WHERE consumer_group = $1 AND message_id = ANY($2::text[]) AND kind = 'dead_lettered'
     RETURNING message_id`,
    [group, known.map((r) => r.message_id).sort()],
  );
  const claimed = new Set(unique);
  for (const r of known) claimed.delete(r.message_id);
  for (const r of replayed) claimed.add(r.message_id);
  return claimed;
}

/**
 * Takes back this transaction's claims of messages that were not applied (a stale reference), so a
 * replay applies them: a fresh claim is removed, a replay's claim is dead-lettered again.
 */
export async function releaseMessageIds(
  tx: PoolClient,
  group: string,
  ids: string[],
): Promise<void> {
  if (ids.length === 0) return;
  await tx.query(
    `WITH released AS (
       DELETE FROM processed_messages WHERE consumer_group = $1 AND message_id = ANY($2::text[]) AND kind = 'applied')
     UPDATE processed_messages SET kind = 'dead_lettered'
     WHERE consumer_group = $1 AND message_id = ANY($2::text[]) AND kind = 'replayed'`,
    [group, ids],
  );
}

/** An event the relay encodes with the topic's schema; it sets `shoal.message-id` to `eventId`. */
export interface EncodedOutboxEvent {
  eventId: string;
  topic: string;
  key: string;
  payload: Record<string, unknown>;
  headers: Record<string, string>;
}

/** A record the relay produces verbatim (a dead letter): these bytes, these headers, nothing added. */
export interface RawOutboxEvent {
  eventId: string;
  topic: string;
  raw: true;
  keyBase64: string | null;
  valueBase64: string | null;
  headers: Record<string, string>;
  /** Kafka's record timestamp (milliseconds since the epoch, as a string); the broker's time when absent. */
  timestamp?: string;
}

export type OutboxEvent = EncodedOutboxEvent | RawOutboxEvent;

export const isRawEvent = (event: OutboxEvent): event is RawOutboxEvent => 'raw' in event;

/**
 * One transaction's events, in order, as one outbox row. `validated`: every encoded event was
 * validated against its topic's schema when it was emitted, so the relay does not validate it again.
 */
export async function writeOutbox(
  tx: PoolClient,
  events: OutboxEvent[],
  validated = false,
): Promise<void> {
  if (events.length === 0) return;
  await tx.query('INSERT INTO outbox (events, event_count, validated) VALUES ($1::json, $2, $3)', [
    JSON.stringify(events),
    events.length,
    validated,
  ]);
}

export interface OutboxFailure {
  seq: number;
  /** The event's place in its row, from 1 (as in the `outbox_events` view). */
  ordinal: number;
  event: OutboxEvent;
  errorClass: string;
  errorMessage: string;
}

/** Events the relay set aside, with the event itself, so an operator can fix and re-emit it. */
export async function recordOutboxFailures(
  tx: PoolClient,
  failures: OutboxFailure[],
): Promise<void> {
  if (failures.length === 0) return;
  await tx.query(
    `INSERT INTO outbox_failures (seq, ordinal, event_id, topic, event, error_class, error_message)
     SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::json[], $6::text[], $7::text[])
     ON CONFLICT DO NOTHING`,
    [
      failures.map((f) => f.seq),
      failures.map((f) => f.ordinal),
      failures.map((f) => pgText(f.event.eventId)),
      failures.map((f) => pgText(f.event.topic)),
      failures.map((f) => JSON.stringify(f.event)),
      failures.map((f) => pgText(f.errorClass)),
      failures.map((f) => pgText(f.errorMessage)),
    ],
  );
}

export interface FailureRow {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  messageId: string;
  reason: string;
  entity?: string;
  entityId?: string;
  action: Action;
  errorClass: string;
  errorMessage: string;
}

/** PostgreSQL text cannot hold NUL; keys and error messages of undecodable records can. */
const pgText = (s: string | null | undefined) =>
  s == null ? null : s.replaceAll('\u0000', '\\u0000');

/**
 * Records messages that were not applied in `message_failures`, and enters the ids of dead-lettered
 * ones in the ledger for as long as their dead letters live: a replay of one is then applied once,
 * and an id applied before that now has a dead letter too (a failed copy) is kept as long, so a
 * replay of that dead letter stays a duplicate.
 */
export async function recordFailures(
  tx: PoolClient,
  group: string,
  rows: FailureRow[],
): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO message_failures (consumer_group, topic, partition, "offset", message_key, message_id, reason, entity, action, error_class, error_message, entity_id)
     SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
     ON CONFLICT DO NOTHING`,
    [
      group,
      rows.map((r) => r.topic),
      rows.map((r) => r.partition),
      rows.map((r) => r.offset),
      rows.map((r) => pgText(r.key)),
      rows.map((r) => pgText(r.messageId)),
      rows.map((r) => r.reason),
      rows.map((r) => r.entity ?? null),
      rows.map((r) => r.action),
      rows.map((r) => pgText(r.errorClass)),
      rows.map((r) => pgText(r.errorMessage)),
      rows.map((r) => pgText(r.entityId)),
    ],
  );
  const deadLettered = [
    ...new Set(rows.filter((r) => r.action === 'dlq').map((r) => pgText(r.messageId)!)),
  ].sort();
  if (deadLettered.length === 0) return;
  await tx.query(
    `INSERT INTO processed_messages (consumer_group, message_id, kind)
     SELECT $1, unnest($2::text[]), 'dead_lettered'
     ON CONFLICT (consumer_group, message_id) DO UPDATE SET processed_at = now(),
       kind = CASE processed_messages.kind WHEN 'dead_lettered' THEN 'dead_lettered' ELSE 'replayed' END`,
    [group, deadLettered],
  );
}

export interface RejectionRow {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  messageId: string;
  reason: string;
  detail: string;
  action: RejectionAction;
}

/** The outcomes of rejected messages (`ctx.reject`), for callers to read. */
export async function recordRejections(
  tx: PoolClient,
  group: string,
  rows: RejectionRow[],
): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO message_rejections (consumer_group, topic, partition, "offset", message_key, message_id, reason, detail, action)
     SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
     ON CONFLICT DO NOTHING`,
    [
      group,
      rows.map((r) => r.topic),
      rows.map((r) => r.partition),
      rows.map((r) => r.offset),
      rows.map((r) => pgText(r.key)),
      rows.map((r) => pgText(r.messageId)),
      rows.map((r) => r.reason),
      rows.map((r) => pgText(r.detail)),
      rows.map((r) => r.action),
    ],
  );
}
