import { randomUUID } from 'node:crypto';
import type { DedupCommand } from '@shoal/contracts';
import { publishCommands } from '../publish.js';

/**
 * Operators' merge and split, as dedup commands on `shoal.dedup-commands.v1` (keyed by incident
 * id, the command id as message id): dedup stays the only writer of its tables, decides whether
 * the command is allowed and records it as an event on `shoal.incidents.v1`.
 */

export function dedupCommand(
  fields: Pick<DedupCommand, 'command' | 'incident_id' | 'actor'> &
    Pick<DedupCommand, 'from_incident_id' | 'group_id' | 'reason'>,
): DedupCommand {
  return {
    command_id: randomUUID(),
    issued_at: new Date().toISOString(),
    ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
  } as DedupCommand;
}

/** Publishes `command` on `shoal.dedup-commands.v1`, keyed by incident id; returns the topic. */
export const publishDedupCommand = (command: DedupCommand): Promise<string> =>
  publishCommands('dedupCommands', [
    { key: String(command.incident_id), commandId: command.command_id, value: command },
  ]);
