import type { ScheduledJob } from '../../src/index.js';
import { groupIdOf } from './handler.js';

/**
 * The counter service's scheduled job (as grouping's `group_activity` flush will be): one event per
 * counter whose total changed since it was last reported, at most `perRun` counters a run. An
 * event covers (project, fingerprint, total), so its id is the same however often a run is killed
 * and run again. The group-events schema has no activity type yet: the event is an
 * `occurrence_grouped` carrying `times_seen`.
 */
export function activityJob(outputTopic: string, everyMs: number, perRun: number): ScheduledJob {
  return {
    name: 'activity',
    everyMs,
    run: async (tx, ctx) => {
      const { rows } = await tx.query<{
        project_id: number;
        fingerprint: string;
        times_seen: number;
      }>(
        `SELECT c.project_id, c.fingerprint, c.times_seen
         FROM occurrence_counts c LEFT JOIN activity_reported r USING (project_id, fingerprint)
         WHERE r.times_seen IS DISTINCT FROM c.times_seen
         ORDER BY c.project_id, c.fingerprint LIMIT $1 FOR UPDATE OF c`,
        [perRun],
      );
      for (const row of rows) {
        const groupId = groupIdOf(row.project_id, row.fingerprint);
        ctx.emit(`${row.project_id}:${row.fingerprint}:${row.times_seen}`, (eventId) => ({
          topic: outputTopic,
          key: String(groupId),
          value: {
            event_id: eventId,
            event_type: 'occurrence_grouped',
            occurred_at: new Date().toISOString(),
            group_id: groupId,
            project_id: row.project_id,
            times_seen: row.times_seen,
          },
        }));
      }
      await tx.query(
        `INSERT INTO activity_reported (project_id, fingerprint, times_seen)
         SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[])
         ON CONFLICT (project_id, fingerprint) DO UPDATE SET times_seen = EXCLUDED.times_seen`,
        [
          rows.map((r) => r.project_id),
          rows.map((r) => r.fingerprint),
          rows.map((r) => r.times_seen),
        ],
      );
    },
  };
}
