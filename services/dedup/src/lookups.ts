import type { GroupEvent } from '@shoal/contracts';
import type { Lookup } from '@shoal/kafka-runtime';
import type { DedupMessage } from './handler.js';

const isGroupEvent = (v: DedupMessage): v is GroupEvent => 'event_type' in v;
/** The group events dedup applies; the others (status, regressions, releases) it passes by. */
export const appliesTo = (v: GroupEvent) =>
  v.event_type === 'group_created' || v.event_type === 'group_activity';

/**
 * The groups dedup's messages name: group events (created and activity) and a split's group. A
 * group deleted on shoal.entity-changes.v1 is a tombstone, so a later message naming it is a stale
 * reference (`SHOAL_POLICY_STALE_REFERENCE_GROUP`, default dlq); one dedup has not heard of is
 * made on first sight (its group_created comes first on its partition).
 */
export const groupLookup: Lookup<DedupMessage> = {
  entity: 'group',
  unknown: 'create',
  refs: (m) => {
    const v = m.value;
    if (isGroupEvent(v)) return appliesTo(v) ? v.group_id : undefined;
    return 'command' in v && v.command === 'split' ? v.group_id : undefined;
  },
  load: async (ids, tx) =>
    new Map(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT group_id::text AS id, deleted_at FROM members WHERE group_id = ANY($1::bigint[])',
          [ids],
        )
      ).rows.map((r) => [r.id, r.deleted_at]),
    ),
};

/**
 * The project of a group event. A project deleted on shoal.entity-changes.v1 is a tombstone, so a
 * later group event of it is a stale reference (`SHOAL_POLICY_STALE_REFERENCE_PROJECT`); projects
 * are made on first sight (lockLiveProjects). Looked up before groups: a deleted project's groups
 * are tombstones too, and the project is the reason.
 */
export const projectLookup: Lookup<DedupMessage> = {
  entity: 'project',
  unknown: 'create',
  refs: (m) => (isGroupEvent(m.value) && appliesTo(m.value) ? m.value.project_id : undefined),
  load: async (ids, tx) =>
    new Map(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT id::text, deleted_at FROM projects WHERE id = ANY($1::bigint[])',
          [ids],
        )
      ).rows.map((r) => [r.id, r.deleted_at]),
    ),
};

export const lookups = [projectLookup, groupLookup];
