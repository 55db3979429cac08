import type { EntityChange, GroupEvent, IncidentEvent } from '@shoal/contracts';
import type { Lookup } from '@shoal/kafka-runtime';
import { COMMANDED_GROUP_EVENTS } from './commands.js';

export type IntakeMessage = GroupEvent | IncidentEvent | EntityChange;

/**
 * The group a group event commands an issue for. A group deleted on shoal.entity-changes.v1 is a
 * tombstone in `intake_groups`, so a later group event naming it is `stale_reference(group)`
 * (`SHOAL_POLICY_STALE_REFERENCE_GROUP`, default dlq) and commands nothing; one intake has not
 * heard of is made on first sight (its group_created comes first on its partition).
 */
export const groupLookup: Lookup<IntakeMessage> = {
  entity: 'group',
  unknown: 'create',
  refs: (m) => {
    if (m.topicKey !== 'groupEvents') return undefined;
    const event = m.value as GroupEvent;
    return COMMANDED_GROUP_EVENTS.has(event.event_type) ? event.group_id : undefined;
  },
  load: async (ids, tx) =>
    new Map(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT group_id::text AS id, deleted_at FROM intake_groups WHERE group_id = ANY($1::bigint[])',
          [ids],
        )
      ).rows.map((r) => [r.id, r.deleted_at]),
    ),
};

export const intakeLookups = [groupLookup];

/** Every input carries a stable `event_id`: a re-send or replay is applied once. */
export const intakeMessageId = (value: IntakeMessage): string => value.event_id;
