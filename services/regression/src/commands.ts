/**
 * Operators' commands to regression (`shoal.regression-commands.v1`, from `shoal orphans cleanup`),
 * so regression stays the only writer of its tables. `cleanup_orphans` removes the named records of
 * its group that are still orphans now (the group deleted, or a proposal unanswered for the
 * command's deadline before it was issued), each with one `orphan_cleanups` audit row, in the
 * batch's transaction: one statement for the whole batch. A named record that is no longer an orphan
 * (answered since, or already removed) is kept, and the command is recorded as refused
 * (`not_orphaned`, naming them) beside what it did remove.
 */
import type { RegressionCommand } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import type { HandlerContext, Message } from '@shoal/kafka-runtime';

export async function applyCommands(
  batch: Message<RegressionCommand>[],
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
) {
  const asked = batch.flatMap(({ value }) =>
    value.change_ids.map((changeId) => ({
      changeId,
      value,
      cutoff: new Date(Date.parse(value.issued_at) - value.deadline_seconds * 1000).toISOString(),
    })),
  );
  const column = <T>(pick: (a: (typeof asked)[number]) => T) => asked.map(pick);
  const { rows } = await tx.query<{ change_id: string; command_id: string }>(
    `WITH asked AS (
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
         AS a(change_id, group_id, cutoff, command_id, actor, reason)),
     gone AS (
       DELETE FROM regressions r USING asked a
       WHERE r.change_id = a.change_id AND r.group_id = a.group_id
         AND (r.detached_at IS NOT NULL OR (r.state = 'proposed' AND r.proposed_at < a.cutoff))
       RETURNING r.id, r.group_id, r.detached_at, to_jsonb(r) AS record, a.command_id, a.actor, a.reason)
     INSERT INTO orphan_cleanups (regression_id, group_id, why, record, actor, command_id, reason)
     SELECT id, group_id, CASE WHEN detached_at IS NOT NULL THEN 'group_deleted' ELSE 'unconfirmed' END,
            record, actor, command_id, reason
     FROM gone
     RETURNING record->>'change_id' AS change_id, command_id`,
    [
      column((a) => a.changeId),
      column((a) => a.value.group_id),
      column((a) => a.cutoff),
      column((a) => a.value.command_id),
      column((a) => a.value.actor),
      column((a) => a.value.reason ?? null),
    ],
  );
  const removed = new Set(rows.map((r) => r.change_id));
  for (const message of batch) {
    const kept = message.value.change_ids.filter((id) => !removed.has(id));
    if (kept.length)
      ctx.reject(
        message,
        'not_orphaned',
        `kept ${kept.length} of ${message.value.change_ids.length} records of group ${message.value.group_id}, no longer orphans (answered since, or already removed): ${kept.join(', ')}`,
      );
  }
}
