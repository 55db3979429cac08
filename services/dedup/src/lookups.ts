import type { Lookup } from '@shoal/kafka-runtime';
import type { DedupMessage } from './handler.js';

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
    if ('event_type' in v)
      return v.event_type === 'group_created' || v.event_type === 'group_activity'
        ? v.group_id
        : undefined;
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

export const lookups = [groupLookup];
