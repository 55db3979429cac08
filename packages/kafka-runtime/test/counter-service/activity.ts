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
        `SELECT project_id, fingerprint, times_seen FROM occurrence_counts
         WHERE reported_times_seen <> times_seen
         ORDER BY project_id, fingerprint LIMIT $1 FOR UPDATE`,
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
        `UPDATE occurrence_counts c SET reported_times_seen = r.times_seen
         FROM unnest($1::int[], $2::text[], $3::bigint[]) r (project_id, fingerprint, times_seen)
         WHERE c.project_id = r.project_id AND c.fingerprint = r.fingerprint`,
        [
          rows.map((r) => r.project_id),
          rows.map((r) => r.fingerprint),
          rows.map((r) => r.times_seen),
        ],
      );
    },
  };
}
