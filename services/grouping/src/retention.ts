import { deleteInBatches, type Pruned, type ServiceRetention } from '@shoal/kafka-runtime';
import { metrics } from '@shoal/observability';
import type { IssueTypePolicies } from './issue-types.js';

/**
 * Grouping's own tables' retention, run by the runtime's pruner:
 * - `group_creation_quota`: a minute's count matters only while occurrences of that minute still
 *   arrive; a row is dropped when its minute and its last spending are both over an hour old.
 * - `held_occurrences` held for noise: an occurrence that did not reach its type's threshold within
 *   the window is dropped, as Sentry does, and counted (`shoal_grouping_noise_expired_total`) — a
 *   domain decision, not a failure. Past the window by detection time and by the time it was held:
 *   old occurrences applied from the log now are not dropped before their hash can come back.
 *   Rows held for the rate limit wait for room and are never dropped.
 */
export function groupingRetention(policies: IssueTypePolicies): ServiceRetention {
  const noisy = [...policies].flatMap(([type, p]) =>
    p.noise ? [[type, p.noise.windowSeconds]] : [],
  );
  return async (pool, batch): Promise<Pruned> => {
    const { rows } = await pool.query<{ now: Date }>('SELECT now()');
    const now = rows[0]!.now;
    const quota = await deleteInBatches(
      pool,
      'group_creation_quota',
      `SELECT ctid FROM group_creation_quota
       WHERE updated_at < $2::timestamptz - interval '1 hour' AND minute < $2::timestamptz - interval '1 hour' LIMIT $1`,
      [now],
      batch,
    );
    const noiseExpired = noisy.length
      ? await deleteInBatches(
          pool,
          'held_occurrences',
          `SELECT h.ctid FROM held_occurrences h
           JOIN unnest($3::bigint[], $4::float8[]) AS p(type, seconds)
             ON (h.occurrence->>'type')::bigint = p.type
           WHERE h.held_for = 'noise'
             AND h.held_at < $2::timestamptz - make_interval(secs => p.seconds)
             AND h.seen_at < $2::timestamptz - make_interval(secs => p.seconds)
           LIMIT $1`,
          [now, noisy.map(([type]) => type), noisy.map(([, seconds]) => seconds)],
          batch,
        )
      : 0;
    metrics.groupingNoiseExpired.inc(noiseExpired);
    return { groupCreationQuota: quota, noiseExpired };
  };
}
