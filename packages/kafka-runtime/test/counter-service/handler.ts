import { createHash } from 'node:crypto';
import type { Occurrence } from '@shoal/contracts';
import type { Handler, Lookup } from '../../src/index.js';

export const POISON_TITLE = 'POISON';
/** An occurrence with this title is refused by the domain (`ctx.reject`, reason `not_allowed`): recorded, not counted. */
export const REJECT_TITLE = 'REJECT';

export const groupIdOf = (projectId: number, fingerprint: string) =>
  (createHash('sha1').update(`${projectId}:${fingerprint}`).digest().readUInt32BE(0) %
    2_000_000_000) +
  1;

/**
 * Counts occurrences per (project, fingerprint) with one upsert per batch; emits one group event
 * each. Rejects those titled `REJECT_TITLE`.
 */
export function counterHandler(outputTopic: string): Handler<Occurrence> {
  return async (all, tx, ctx) => {
    if (all.some((m) => m.value.issue_title === POISON_TITLE)) throw new Error('poison occurrence');
    const batch = all.filter((m) => {
      if (m.value.issue_title !== REJECT_TITLE) return true;
      ctx.reject(m, 'not_allowed', `occurrence ${m.value.id} is not allowed`);
      return false;
    });
    const counts = new Map<string, { project: number; fingerprint: string; n: number }>();
    for (const { value } of batch) {
      const key = `${value.project_id}\u0000${value.fingerprint[0]}`;
      const entry = counts.get(key) ?? {
        project: value.project_id,
        fingerprint: value.fingerprint[0],
        n: 0,
      };
      entry.n++;
      counts.set(key, entry);
    }
    const rows = [...counts.values()];
    await tx.query(
      `INSERT INTO occurrence_counts (project_id, fingerprint, times_seen)
       SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[])
       ON CONFLICT (project_id, fingerprint) DO UPDATE SET times_seen = occurrence_counts.times_seen + EXCLUDED.times_seen`,
      [rows.map((r) => r.project), rows.map((r) => r.fingerprint), rows.map((r) => r.n)],
    );
    for (const message of batch) {
      const groupId = groupIdOf(message.value.project_id, message.value.fingerprint[0]);
      ctx.emit(message, (eventId) => ({
        topic: outputTopic,
        key: String(groupId),
        value: {
          event_id: eventId,
          event_type: 'occurrence_grouped',
          occurred_at: new Date(message.timestamp).toISOString(),
          group_id: groupId,
          project_id: message.value.project_id,
          occurrence_id: message.value.id,
        },
      }));
    }
  };
}

/** Projects must be announced (a row); a deleted one (deleted_at) is a stale reference. */
export const projectLookup: Lookup<Occurrence> = {
  entity: 'project',
  unknown: 'announce',
  refs: (m) => m.value.project_id,
  load: async (ids, tx) =>
    new Map(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT id::text, deleted_at FROM projects WHERE id = ANY($1::int[])',
          [ids],
        )
      ).rows.map((r) => [r.id, r.deleted_at]),
    ),
};
