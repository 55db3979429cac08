import type { LifecycleCommand } from '@shoal/contracts';
import type { Lookup } from '@shoal/kafka-runtime';
import { SYSTEM_COMMANDS } from './decide.js';

/**
 * The issue an agent's command names (issue id = group id). A deleted issue is a tombstone, so the
 * command is `stale_reference(issue)` (`SHOAL_POLICY_STALE_REFERENCE_ISSUE`, default dlq). An issue
 * never opened is held until its open is applied, then dead-lettered `unknown_reference` past the
 * deadline (`SHOAL_HOLD_DEADLINE_SECONDS_ISSUE`), even when intake has seen its group deleted:
 * only decide's own table is read, because intake's progress races decide's log, and a verdict
 * taken from it made a rebuild (where intake runs ahead) dead-letter commands live had applied.
 * System commands are not looked up: intake's
 * consumers race, so one may come before its issue's open, and holding it would park that open
 * behind it (the key's order); the handler keeps them until the open instead.
 */
export const issueLookup: Lookup<LifecycleCommand> = {
  entity: 'issue',
  unknown: 'announce',
  refs: (m) => (SYSTEM_COMMANDS.has(m.value.command) ? undefined : m.value.issue_id),
  load: async (ids, tx) =>
    new Map(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT id::text, deleted_at FROM issues WHERE id = ANY($1::bigint[])',
          [ids],
        )
      ).rows.map((r) => [r.id, r.deleted_at]),
    ),
};

export const decideLookups = [issueLookup];

/** A command's message id is its `command_id` (the API's Idempotency-Key, intake's UUIDv5 of the source event). */
export const decideMessageId = (value: LifecycleCommand): string => value.command_id;
