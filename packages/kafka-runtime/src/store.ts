import type { PoolClient } from '@shoal/db';
import type { Action } from './policy.js';

/** The runtime's tables (packages/db/migrations): offsets, the processed-id ledger, outbox, failures. */

/**
 * Locks the partition's offset row for the rest of the transaction (two members briefly owning one
 * partition around a rebalance apply one after the other) and returns the next offset to apply.
 */
export async function lockOffset(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
): Promise<number | undefined> {
  const select = () =>
    tx.query<{ next_offset: number }>(
      'SELECT next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE',
      [group, topic, partition],
    );
  let { rows } = await select();
  if (rows.length === 0) {
    await tx.query(
      'INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, -1) ON CONFLICT DO NOTHING',
      [group, topic, partition],
    );
    ({ rows } = await select());
  }
  const next = rows[0]!.next_offset;
  return next < 0 ? undefined : next;
}

export async function storeOffset(
  tx: PoolClient,
  group: string,
  topic: string,
  partition: number,
  next: number,
): Promise<void> {
  await tx.query(
    'UPDATE consumer_offsets SET next_offset = $4, updated_at = now() WHERE consumer_group = $1 AND topic = $2 AND partition = $3',
    [group, topic, partition, next],
  );
}

export async function storedOffsets(
  pool: { query: PoolClient['query'] },
  group: string,
  topic: string,
): Promise<Map<number, number>> {
  const { rows } = await pool.query<{ partition: number; next_offset: number }>(
    'SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND next_offset >= 0',
    [group, topic],
  );
  return new Map(rows.map((r) => [r.partition, r.next_offset]));
}

/**
 * Enters `ids` in the processed ledger and returns those that were not there: the messages this
 * transaction may apply. An id another member is entering concurrently waits for its transaction and
 * then counts as processed. Sorted, so two members claiming overlapping ids cannot deadlock.
 */
export async function claimMessageIds(
  tx: PoolClient,
  group: string,
  ids: string[],
): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await tx.query<{ message_id: string }>(
    `INSERT INTO processed_messages (consumer_group, message_id)
     SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_id`,
    [group, [...new Set(ids)].sort()],
  );
  return new Set(rows.map((r) => r.message_id));
}

/** Takes back claims of messages that were not applied (dead-lettered or skipped), so a replay applies them. */
export async function releaseMessageIds(
  tx: PoolClient,
  group: string,
  ids: string[],
): Promise<void> {
  if (ids.length === 0) return;
  await tx.query(
    'DELETE FROM processed_messages WHERE consumer_group = $1 AND message_id = ANY($2::text[])',
    [group, ids],
  );
}

export interface OutboxEvent {
  eventId: string;
  topic: string;
  key: string;
  payload: Record<string, unknown>;
  headers: Record<string, string>;
}

/** One transaction's events, in order, as one outbox row. */
export async function writeOutbox(tx: PoolClient, events: OutboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.query('INSERT INTO outbox (events, event_count) VALUES ($1::json, $2)', [
    JSON.stringify(events),
    events.length,
  ]);
}

export interface FailureRow {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  messageId: string;
  reason: string;
  entity?: string;
  action: Action;
  errorClass: string;
  errorMessage: string;
}

/** PostgreSQL text cannot hold NUL; keys and error messages of undecodable records can. */
const pgText = (s: string | null | undefined) =>
  s == null ? null : s.replaceAll('\u0000', '\\u0000');

export async function recordFailures(
  tx: PoolClient,
  group: string,
  rows: FailureRow[],
): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO message_failures (consumer_group, topic, partition, "offset", message_key, message_id, reason, entity, action, error_class, error_message)
     SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
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
    ],
  );
}

/** Bounded housekeeping: ledger entries past retention, outbox rows published a day ago. */
export async function prune(
  pool: { query: PoolClient['query'] },
  ledgerRetentionMs: number,
): Promise<{ ledger: number; outbox: number }> {
  const ledger = await pool.query(
    `DELETE FROM processed_messages WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1) LIMIT 10000))`,
    [ledgerRetentionMs / 1000],
  );
  const outbox = await pool.query(
    `DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE published_at < now() - interval '1 day' LIMIT 10000)`,
  );
  return { ledger: ledger.rowCount ?? 0, outbox: outbox.rowCount ?? 0 };
}
