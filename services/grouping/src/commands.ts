/**
 * Operators' commands to grouping (`shoal.grouping-commands.v1`, from `shoal orphans cleanup
 * --service grouping`), so grouping stays the only writer of its tables and the runtime's rows in
 * its schema change only through the runtime's own paths. `cleanup_orphans` cleans the named
 * records of one kind that the `orphans` view (migrations/…_orphan-cleanups.sql, the definition
 * `shoal orphans report` reads too) still lists, each with one `orphan_cleanups` audit row, in the
 * batch's transaction:
 * - `group`: deleted as an entity change deletes a group (tombstone, fingerprints freed);
 * - `held_occurrence`: removed (held for noise or the rate limit; the row whole in the audit);
 * - `held_message`: its deadline brought to now (`settleHeldNow`): the runtime's next re-drive
 *   dead-letters it, never deleted unapplied;
 * - `parked_key`: expired now (`expireParkedNow`): the runtime's parked expirer dead-letters its
 *   parked messages in order.
 * A named record no longer an orphan (its entity restored, already cleaned) is kept, and the
 * command recorded as refused (`not_orphaned`, naming them) beside what it did clean.
 */
import type { GroupingCommand } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import {
  expireParkedNow,
  settleHeldNow,
  type HandlerContext,
  type Message,
} from '@shoal/kafka-runtime';
import { deleteGroup } from './handler.js';

type Cleaned = { id: string; record: unknown };

async function clean(
  tx: PoolClient,
  kind: GroupingCommand['orphan_kind'],
  ids: string[],
  at: string,
): Promise<Cleaned[]> {
  switch (kind) {
    case 'group': {
      const { rows } = await tx.query<Cleaned>(
        'SELECT id::text, to_jsonb(g) AS record FROM groups g WHERE id = ANY($1::bigint[]) ORDER BY g.id FOR NO KEY UPDATE',
        [ids],
      );
      for (const row of rows) await deleteGroup(tx, Number(row.id), at, false);
      return rows;
    }
    case 'held_occurrence': {
      const { rows } = await tx.query<Cleaned>(
        `DELETE FROM held_occurrences h WHERE h.project_id || ':' || h.primary_hash || ':' || h.message_id = ANY($1::text[])
         RETURNING h.project_id || ':' || h.primary_hash || ':' || h.message_id AS id, to_jsonb(h) AS record`,
        [ids],
      );
      return rows;
    }
    case 'held_message':
      return (await settleHeldNow(tx, ids)).map((r) => ({ id: r.seq, record: r.record }));
    case 'parked_key': {
      // ids as the view spells them (PostgreSQL's JSON text), matched back by their parts
      const idOf = new Map(ids.map((id) => [JSON.stringify(JSON.parse(id)), id]));
      const keys = ids.map((id) => {
        const [group, topic, key] = JSON.parse(id) as [string, string, string];
        return { group, topic, key };
      });
      return (await expireParkedNow(tx, keys)).map((r) => ({
        id: idOf.get(JSON.stringify([r.group, r.topic, r.key]))!,
        record: r.record,
      }));
    }
  }
}

export async function applyCommands(
  batch: Message<GroupingCommand>[],
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
) {
  for (const message of batch) {
    const { value } = message;
    const { rows: still } = await tx.query<{ id: string; why: string }>(
      'SELECT id, why FROM orphans WHERE kind = $1 AND id = ANY($2::text[])',
      [value.orphan_kind, value.ids],
    );
    const why = new Map(still.map((r) => [r.id, r.why]));
    const cleaned = still.length
      ? await clean(tx, value.orphan_kind, [...why.keys()], value.issued_at)
      : [];
    await tx.query(
      `INSERT INTO orphan_cleanups (kind, record_id, why, record, actor, reason, command_id)
       SELECT $1, id, why, record, $5, $6, $7 FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS c(id, why, record)`,
      [
        value.orphan_kind,
        cleaned.map((c) => c.id),
        cleaned.map((c) => why.get(c.id)!),
        cleaned.map((c) => JSON.stringify(c.record)),
        value.actor,
        value.reason ?? null,
        value.command_id,
      ],
    );
    const done = new Set(cleaned.map((c) => c.id));
    const kept = value.ids.filter((id) => !done.has(id));
    if (kept.length)
      ctx.reject(
        message,
        'not_orphaned',
        `kept ${kept.length} of ${value.ids.length} ${value.orphan_kind} records, no longer orphans (restored, or already cleaned): ${kept.join(', ')}`,
      );
  }
}
