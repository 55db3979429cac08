import type { LifecycleCommand } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import { expireParkedNow } from '@shoal/kafka-runtime';

/**
 * `cleanup_orphans` (`shoal orphans cleanup --service lifecycle`): of the records a command names
 * for its issue, those the `orphans` view (migrations/1766400200000_orphan-cleanups.sql, the
 * definition `shoal orphans report` reads too) still lists are cleaned, each with an
 * `orphan_cleanups` row, in the batch's transaction:
 * - `issue`: tombstoned as a `delete` is (decide.ts; the `deleted` event, history kept) by the
 *   handler, in log order with the batch's other commands for the issue;
 * - `parked_key`: expired now (`expireParkedNow`): the runtime's parked expirer dead-letters its
 *   parked messages in order, never deleted unapplied.
 * A named record no longer an orphan (restored, already cleaned) is kept and named.
 */

export type OrphanKind = NonNullable<LifecycleCommand['orphans']>[number]['kind'];

export interface CleanedRecord {
  kind: OrphanKind;
  id: string;
  why: string;
  record: unknown;
}

export interface OrphanCleanup {
  /** Why the issue is still an orphan (the view's `why`), if the command names it and it is. */
  issueWhy?: string;
  /** Parked keys expired now, for their audit rows. */
  cleaned: CleanedRecord[];
  /** The named records the view no longer lists, as `kind id`. */
  kept: string[];
}

/** Re-checks what `cmd` names against the view and expires its parked keys still orphans. */
export async function cleanParkedKeys(
  tx: PoolClient,
  cmd: LifecycleCommand,
): Promise<OrphanCleanup> {
  const named = cmd.orphans ?? [];
  const { rows: still } = await tx.query<{ kind: OrphanKind; id: string; why: string }>(
    `SELECT o.kind, o.id, o.why FROM orphans o
     JOIN unnest($2::text[], $3::text[]) AS n(kind, id) ON (o.kind, o.id) = (n.kind, n.id)
     WHERE o.issue_id = $1`,
    [cmd.issue_id, named.map((n) => n.kind), named.map((n) => n.id)],
  );
  const why = new Map(still.map((r) => [`${r.kind} ${r.id}`, r.why]));
  // parked ids as the view spells them (PostgreSQL's JSON text), matched back by their parts
  const parkedIds = still.filter((r) => r.kind === 'parked_key').map((r) => r.id);
  const idOf = new Map(parkedIds.map((id) => [JSON.stringify(JSON.parse(id)), id]));
  const expired = await expireParkedNow(
    tx,
    parkedIds.map((id) => {
      const [group, topic, key] = JSON.parse(id) as [string, string, string];
      return { group, topic, key };
    }),
  );
  const cleaned = expired.map((r) => {
    const id = idOf.get(JSON.stringify([r.group, r.topic, r.key]))!;
    return { kind: 'parked_key' as const, id, why: why.get(`parked_key ${id}`)!, record: r.record };
  });
  const done = new Set(cleaned.map((c) => `${c.kind} ${c.id}`));
  const issueWhy = why.get(`issue ${cmd.issue_id}`);
  if (issueWhy) done.add(`issue ${cmd.issue_id}`);
  return {
    issueWhy,
    cleaned,
    kept: named.map((n) => `${n.kind} ${n.id}`).filter((n) => !done.has(n)),
  };
}

/** The audit rows of a batch's cleanups, one statement. */
export async function writeOrphanCleanups(
  tx: PoolClient,
  rows: (CleanedRecord & {
    issue_id: number;
    actor: string;
    reason: string | null;
    command_id: string;
  })[],
): Promise<void> {
  if (!rows.length) return;
  await tx.query(
    `INSERT INTO orphan_cleanups (kind, record_id, issue_id, why, record, actor, reason, command_id)
     SELECT kind, id, issue_id, why, record, actor, reason, command_id
     FROM jsonb_to_recordset($1::jsonb) AS r(kind text, id text, issue_id bigint, why text,
       record jsonb, actor text, reason text, command_id uuid)`,
    [JSON.stringify(rows)],
  );
}
