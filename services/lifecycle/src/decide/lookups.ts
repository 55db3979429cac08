import type { LifecycleCommand } from '@shoal/contracts';
import type { Lookup } from '@shoal/kafka-runtime';
import { SYSTEM_COMMANDS } from './decide.js';

/**
 * The issue an agent's command names (issue id = group id). A deleted issue is a tombstone, so the
 * command is `stale_reference(issue)` (`SHOAL_POLICY_STALE_REFERENCE_ISSUE`, default dlq); so is
 * one never opened whose group intake saw deleted (`intake_groups`: it will never open), and a
 * command held for it is dead-lettered so at the runtime's next re-drive, not left held until its
 * deadline. Any other issue never opened is held until its open is applied, then dead-lettered
 * `unknown_reference` past the deadline (`SHOAL_HOLD_DEADLINE_SECONDS_ISSUE`). System commands are not looked up: intake's
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
          `SELECT id::text, deleted_at FROM issues WHERE id = ANY($1::bigint[])
           UNION ALL
           SELECT g.group_id::text, g.deleted_at FROM intake_groups g
           WHERE g.group_id = ANY($1::bigint[]) AND g.deleted_at IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM issues i WHERE i.id = g.group_id)`,
          [ids],
        )
      ).rows.map((r) => [r.id, r.deleted_at]),
    ),
};

export const decideLookups = [issueLookup];

/** A command's message id is its `command_id` (the API's Idempotency-Key, intake's UUIDv5 of the source event). */
export const decideMessageId = (value: LifecycleCommand): string => value.command_id;
