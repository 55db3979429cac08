import { ConfigError } from '@shoal/config';
import type { ScheduledJob } from '@shoal/kafka-runtime';

/**
 * The `group_activity` flush: a scheduled job that reports, per live group whose times seen moved
 * since its last report, what changed (times seen delta and total, first and last seen, the
 * environments first seen since, the latest occurrence's level, title, culprit, release and trace
 * id). It reads the aggregates occurrence batches keep anyway; nothing is written per occurrence
 * for it. Each event covers `<group id>:<times seen reported>`, and the run records what it
 * reported in its own transaction, so a killed run is re-run with the same events and ids, and a
 * group's deltas sum to its times seen.
 */

export const GROUP_ACTIVITY_VARIABLE = 'SHOAL_GROUP_ACTIVITY_SECONDS';
const DEFAULT_SECONDS = 5;
/** Groups reported per run: bounds a run's time and transaction; the rest wait for the next. */
export const GROUPS_PER_RUN = 1000;

/** The flush's period from `SHOAL_GROUP_ACTIVITY_SECONDS` (default 5 s), in ms. */
export function groupActivityEveryMs(env: Record<string, string | undefined>): number {
  const text = env[GROUP_ACTIVITY_VARIABLE];
  if (text === undefined || text === '') return DEFAULT_SECONDS * 1000;
  const seconds = Number(text);
  if (!(seconds > 0) || !Number.isFinite(seconds))
    throw new ConfigError([
      { variable: GROUP_ACTIVITY_VARIABLE, expected: 'a positive number of seconds', got: text },
    ]);
  return seconds * 1000;
}

interface Row {
  id: string;
  project_id: string;
  times_seen: string;
  reported_times_seen: string;
  first_seen: Date;
  last_seen: Date;
  level: 'fatal' | 'error' | 'warning' | 'info' | 'debug';
  title: string;
  culprit: string | null;
  last_release: string | null;
  last_trace_id: string | null;
}

export function groupActivityJob(groupEvents: string, everyMs: number): ScheduledJob {
  return {
    name: 'group-activity',
    everyMs,
    run: async (tx, ctx) => {
      // locked like an occurrence batch locks them, so no batch moves a group mid-report, and in the
      // same order (by the bigint g.id: a bare `id` would sort by the text this selects, '10' before
      // '2', and deadlock with a batch)
      const { rows } = await tx.query<Row>(
        `SELECT id::text, project_id::text, times_seen::text, reported_times_seen::text, first_seen,
                last_seen, level, title, culprit, last_release, last_trace_id
         FROM groups g WHERE times_seen <> reported_times_seen AND deleted_at IS NULL
         ORDER BY g.id LIMIT $1 FOR NO KEY UPDATE`,
        [GROUPS_PER_RUN],
      );
      if (!rows.length) return;
      const ids = rows.map((r) => r.id);
      const { rows: envs } = await tx.query<{ group_id: string; environment: string }>(
        `UPDATE group_environments SET reported = true
         WHERE group_id = ANY($1::bigint[]) AND NOT reported RETURNING group_id::text, environment`,
        [ids],
      );
      const newEnvs = new Map<string, string[]>();
      for (const e of envs)
        newEnvs.set(e.group_id, [...(newEnvs.get(e.group_id) ?? []), e.environment]);
      for (const row of rows) {
        const id = Number(row.id);
        const environments = newEnvs.get(row.id)?.sort();
        ctx.emit(`${row.id}:${row.times_seen}`, (eventId) => ({
          topic: groupEvents,
          key: row.id,
          value: {
            event_id: eventId,
            event_type: 'group_activity',
            occurred_at: row.last_seen.toISOString(),
            group_id: id,
            project_id: Number(row.project_id),
            times_seen: Number(row.times_seen),
            times_seen_delta: Number(row.times_seen) - Number(row.reported_times_seen),
            first_seen: row.first_seen.toISOString(),
            last_seen: row.last_seen.toISOString(),
            ...(environments ? { new_environments: environments } : {}),
            level: row.level,
            title: row.title,
            culprit: row.culprit,
            release: row.last_release,
            ...(row.last_trace_id ? { trace_id: row.last_trace_id } : {}),
          },
        }));
      }
      await tx.query(
        'UPDATE groups SET reported_times_seen = times_seen WHERE id = ANY($1::bigint[])',
        [ids],
      );
    },
  };
}
