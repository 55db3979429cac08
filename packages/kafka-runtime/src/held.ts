import { storableText, type PoolClient } from '@shoal/db';
import type { KafkaMessage } from 'kafkajs';
import type { Decoded } from './decode.js';
import { holdDeadlineMs, type Hold, type Lookup } from './lookups.js';
import { headersAsBase64, keyOf, storedRecord } from './parking.js';
import type { ReferenceRules } from './policy.js';

/**
 * Deleted is not the same as not yet known (DESIGN.md semantics 7): the store of messages held for
 * an entity never announced. A chunk holds them (`holdMessages`, in its transaction, its offset
 * moving on); a re-drive (chunk.ts `heldRedriver`, right after an entity-change chunk and on a
 * timer) takes back those whose entity is now known, announced or deleted, or whose deadline passed
 * (`takeSettleable`), and runs them through the chunk's steps again: applied, dead-lettered
 * (`stale_reference`, or `unknown_reference` past the deadline) or, rarely, held again with their
 * first hold time. A held row is never deleted unapplied: it leaves only through those steps.
 *
 * Blocks on: PostgreSQL (the caller's transaction). Throws: what PostgreSQL throws.
 * Rebalance: holds no state; rows are taken under the partition's offset row lock.
 */

export async function holdMessages<T>(
  tx: PoolClient,
  where: { group: string; topic: string; partition: number },
  held: { d: Decoded<T>; hold: Hold }[],
  rules: ReferenceRules,
): Promise<void> {
  if (held.length === 0) return;
  await tx.query(
    `INSERT INTO held_messages (consumer_group, topic, partition, "offset", message_key, message_id,
       key_bytes, value_bytes, headers, record_timestamp, entity, entity_id, held_at, deadline_at)
     SELECT $1, $2, $3::int, o, k, m, kb, vb, h, t, e, i, s, s + d * interval '1 millisecond'
     FROM unnest($4::bigint[], $5::text[], $6::text[], $7::bytea[], $8::bytea[], $9::json[], $10::text[],
       $11::text[], $12::text[], $13::timestamptz[], $14::bigint[]) AS r(o, k, m, kb, vb, h, t, e, i, s, d)
     ON CONFLICT (consumer_group, topic, partition, "offset") DO NOTHING`,
    [
      where.group,
      where.topic,
      where.partition,
      held.map((h) => h.d.offset),
      held.map((h) => keyOf(h.d)),
      held.map((h) => storableText(h.d.messageId)),
      held.map((h) => h.d.record.key ?? null),
      held.map((h) => h.d.record.value ?? null),
      held.map((h) => JSON.stringify(headersAsBase64(h.d.record))),
      held.map((h) => h.d.record.timestamp),
      held.map((h) => h.hold.entity),
      held.map((h) => storableText(h.hold.id)),
      held.map((h) => h.hold.since.toISOString()),
      held.map((h) => holdDeadlineMs(h.hold.entity, rules)),
    ],
  );
}

/** The partitions of `group` holding messages. */
export async function heldPartitions(
  pool: { query: PoolClient['query'] },
  group: string,
): Promise<{ topic: string; partition: number }[]> {
  const { rows } = await pool.query<{ topic: string; partition: number }>(
    'SELECT DISTINCT topic, partition FROM held_messages WHERE consumer_group = $1',
    [group],
  );
  return rows;
}

/**
 * Takes (deletes, in the caller's transaction) up to `limit` held messages of a partition that can
 * be settled now, oldest first: their entity is known to its lookup (one query per kind), or their
 * deadline passed. Returns them as the records they were, with when each was first held.
 */
export async function takeSettleable<T>(
  tx: PoolClient,
  where: { group: string; topic: string; partition: number },
  lookups: Lookup<T>[],
  limit: number,
): Promise<{ record: KafkaMessage; heldAt: Date }[]> {
  const { group, topic, partition } = where;
  const { rows: waiting } = await tx.query<{ entity: string; ids: string[] }>(
    `SELECT entity, array_agg(DISTINCT entity_id) AS ids FROM held_messages
     WHERE consumer_group = $1 AND topic = $2 AND partition = $3 GROUP BY entity`,
    [group, topic, partition],
  );
  const known: [string, string][] = [];
  for (const { entity, ids } of waiting) {
    const lookup = lookups.find((l) => l.entity === entity);
    if (!lookup) continue; // a kind the service no longer looks up: its deadline settles it
    for (const id of (await lookup.load(ids, tx)).keys()) known.push([entity, storableText(id)]);
  }
  const { rows } = await tx.query<{
    seq: string;
    offset: string;
    key_bytes: Buffer | null;
    value_bytes: Buffer | null;
    headers: Record<string, string>;
    record_timestamp: string;
    held_at: Date;
  }>(
    `DELETE FROM held_messages WHERE seq IN (
       SELECT seq FROM held_messages
       WHERE consumer_group = $1 AND topic = $2 AND partition = $3
         AND (deadline_at <= now()
              OR (entity, entity_id) IN (SELECT * FROM unnest($4::text[], $5::text[])))
       ORDER BY seq LIMIT $6)
     RETURNING seq::text, "offset"::text, key_bytes, value_bytes, headers, record_timestamp, held_at`,
    [group, topic, partition, known.map((k) => k[0]), known.map((k) => k[1]), limit],
  );
  return rows
    .sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1))
    .map((r) => ({ record: storedRecord(r), heldAt: r.held_at }));
}

/** How many messages the group holds on `topic`. */
export async function heldCount(tx: PoolClient, group: string, topic: string): Promise<number> {
  const { rows } = await tx.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM held_messages WHERE consumer_group = $1 AND topic = $2',
    [group, topic],
  );
  return rows[0]!.n;
}

/**
 * Brings the deadline of the held messages `seqs` (of any group of this schema) to now, so the
 * next re-drive settles them through the chunk's steps: dead-lettered, never deleted unapplied (an
 * operator's orphan cleanup, applied by the owning service as a command). Returns each row as it
 * was, without its bytes.
 */
export async function settleHeldNow(
  tx: PoolClient,
  seqs: string[],
): Promise<{ seq: string; record: Record<string, unknown> }[]> {
  const { rows } = await tx.query<{ seq: string; record: Record<string, unknown> }>(
    `WITH was AS (SELECT * FROM held_messages WHERE seq = ANY($1::bigint[]) FOR UPDATE)
     UPDATE held_messages h SET deadline_at = least(h.deadline_at, now()) FROM was
     WHERE h.seq = was.seq
     RETURNING h.seq::text, to_jsonb(was) - 'key_bytes' - 'value_bytes' - 'headers' AS record`,
    [seqs],
  );
  return rows;
}
