import type { GroupEvent, LifecycleCommand } from '@shoal/contracts';
import { v5 as uuidv5 } from 'uuid';

/**
 * The system commands intake makes, as pure functions of the source event: what each group event
 * means for its issue (issue id = group id), and the command's id. Nothing here reads a table.
 */

export const INTAKE_ACTOR = 'lifecycle-intake';

const COMMAND_NAMESPACE = 'd1b8a3e4-2f6c-5a7d-9e0b-4c3f2a1b6d8e';

/**
 * A system command's id: UUIDv5 of the source event's id, with the issue and the command (one
 * event may command several issues: a project's hide; or one issue twice: open, then hide). A
 * re-delivered or replayed source event gives the same ids, so decide applies each once.
 */
export const commandIdOf = (sourceEventId: string, issueId: number, command: string) =>
  uuidv5(`${sourceEventId}|${issueId}|${command}`, COMMAND_NAMESPACE);

export type SystemCommand = LifecycleCommand & { origin: 'system' };

/** The fields every system command has; `issuedAt` is intake's clock when it handled the source. */
export function systemCommand(
  source: { event_id: string; occurred_at: string },
  issueId: number,
  command: LifecycleCommand['command'],
  issuedAt: string,
  fields: Omit<Partial<LifecycleCommand>, 'origin'> = {},
): SystemCommand {
  return {
    command_id: commandIdOf(source.event_id, issueId, command),
    command,
    origin: 'system',
    issue_id: issueId,
    actor: INTAKE_ACTOR,
    issued_at: issuedAt,
    occurred_at: source.occurred_at,
    ...withoutUndefined(fields),
  };
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

const nonEmpty = (text: string | null | undefined) =>
  text === undefined ? undefined : text === null || text === '' ? null : text;

const HEX_SHA = /^[0-9a-fA-F]{7,64}$/;

/** The group events intake turns into a command; the others (occurrence_grouped, release_seen, no-ops) it passes by. */
export const COMMANDED_GROUP_EVENTS = new Set<GroupEvent['event_type']>([
  'group_created',
  'group_activity',
  'status_changed',
  'status_change_noop',
]);

/** A status_changed (or noop) without its per-group sequence cannot be ordered against the others. */
export class UnorderedStatusChange extends Error {
  constructor(event: GroupEvent) {
    super(`${event.event_type} ${event.event_id} of group ${event.group_id} carries no sequence`);
  }
}

/**
 * group_created → open (the group's telemetry); group_activity → observe (read model only);
 * status_changed → sync_status (grouping's change, its sequence and resolution); a
 * status_change_noop of lifecycle's own conditional change → sync_status with `noop` (decide makes
 * the issue follow what the group holds); undefined for the events that command nothing (a noop of
 * someone else's change). Throws UnorderedStatusChange for a status change without sequence.
 */
export function commandOfGroupEvent(
  event: GroupEvent,
  issuedAt: string,
): SystemCommand | undefined {
  const issue = event.group_id;
  switch (event.event_type) {
    case 'group_created':
      return systemCommand(event, issue, 'open', issuedAt, {
        project_id: event.project_id,
        group: withoutUndefined({
          short_id: event.short_id,
          title: event.title,
          culprit: event.culprit,
          level: event.level,
          primary_fingerprint: event.primary_fingerprint,
          release: event.release,
          environment: event.environment,
          first_seen: event.first_seen ?? event.occurred_at,
          last_seen: event.last_seen ?? event.occurred_at,
          times_seen: event.times_seen,
          trace_id: event.trace_id,
        }),
      });
    case 'group_activity':
      return systemCommand(event, issue, 'observe', issuedAt, {
        group: withoutUndefined({
          title: event.title,
          culprit: event.culprit,
          level: event.level,
          release: event.release,
          environment: event.environment,
          first_seen: event.first_seen,
          last_seen: event.last_seen,
          times_seen: event.times_seen,
          times_seen_delta: event.times_seen_delta,
          trace_id: event.trace_id,
        }),
      });
    case 'status_changed': {
      if (event.status === undefined || event.sequence === undefined)
        throw new UnorderedStatusChange(event);
      const r = event.resolution;
      return systemCommand(event, issue, 'sync_status', issuedAt, {
        group_status: withoutUndefined({
          status: event.status,
          previous_status: event.previous_status,
          substatus: event.substatus,
          sequence: event.sequence,
          resolution_id: event.resolution_id,
          decided_by: event.decided_by,
          change_id: event.change_id,
        }),
        resolution:
          r &&
          withoutUndefined({
            type: r.type,
            release: nonEmpty(r.release),
            current_release: nonEmpty(r.current_release_version),
            // grouping's commit is upstream's text; the command carries it only as a SHA
            commit_shas: r.commit && HEX_SHA.test(r.commit) ? [r.commit] : undefined,
            resolution_id: event.resolution_id,
            resolved_at: r.resolved_at,
          }),
      });
    }
    case 'status_change_noop': {
      if (event.decided_by !== 'lifecycle') return undefined;
      if (event.status === undefined || event.sequence === undefined)
        throw new UnorderedStatusChange(event);
      return systemCommand(event, issue, 'sync_status', issuedAt, {
        group_status: withoutUndefined({
          status: event.status,
          sequence: event.sequence,
          resolution_id: event.resolution_id,
          decided_by: event.decided_by,
          change_id: event.change_id,
          noop: true,
        }),
      });
    }
    default:
      return undefined;
  }
}
