import type { LifecycleCommand, LifecycleEvent, StatusChange } from '@shoal/contracts';
import type { GroupRequest, GroupStatus } from '../transitions.js';
import type { LifecycleChange } from './decide.js';
import type { IssueRow } from './rows.js';

/**
 * What the decide consumer publishes, built from the issue after a change: the lifecycle event
 * (shoal.lifecycle.v1, the whole issue with it) and the conditional status change grouping applies
 * (shoal.status-changes.v1, naming the group and what it expects to find).
 */

type IssueSnapshot = NonNullable<LifecycleEvent['issue']>;

/** The whole issue as events carry it. */
export function snapshotOf(row: IssueRow): IssueSnapshot {
  return {
    issue_id: row.id,
    group_id: row.id,
    project_id: row.project_id,
    status: row.status,
    version: row.version,
    severity: row.severity,
    category: row.category,
    assignee: row.assignee,
    claimed_by: row.claimed_by,
    claim_expires_at: row.claim_expires_at,
    sla_due_at: row.sla_due_at,
    title: row.title,
    short_id: row.short_id,
    culprit: row.culprit,
    level: row.level,
    trace_id: row.trace_id,
    request_id: row.request_id,
    release_sha: row.release_sha,
    resolution: row.resolution,
    close_reason: row.close_reason,
    duplicate_of: row.duplicate_of,
    canonical_incident_id: row.canonical_incident_id,
    times_seen: row.times_seen,
    first_seen: row.first_seen,
    last_seen: row.last_seen,
    opened_at: row.opened_at,
    status_since: row.status_since,
    updated_at: row.updated_at,
    hidden: row.hidden,
    deleted_at: row.deleted_at,
  };
}

const present = <V>(key: string, value: V | null | undefined) =>
  value === null || value === undefined ? {} : { [key]: value };

export function lifecycleEvent(
  eventId: string,
  change: LifecycleChange,
  before: IssueRow | undefined,
  after: IssueRow,
  cmd: LifecycleCommand,
): LifecycleEvent {
  const run = change.details.run_event as LifecycleEvent['run_event'] | undefined;
  const resolved = change.type === 'resolved' ? after.resolution : null;
  return {
    event_id: eventId,
    event_type: change.type,
    issue_id: after.id,
    group_id: after.id,
    project_id: after.project_id,
    version: after.version,
    status: after.status,
    ...present('previous_status', before?.status),
    occurred_at: after.updated_at,
    actor: cmd.actor,
    origin: cmd.origin ?? 'agent',
    command_id: cmd.command_id,
    claimed_by: after.claimed_by,
    claim_expires_at: after.claim_expires_at,
    ...present('note', cmd.note),
    ...present('run_event', run),
    ...present('commit_shas', resolved?.commit_shas),
    ...present('release', resolved?.release),
    ...present('resolution', after.resolution),
    close_reason: after.close_reason,
    duplicate_of: after.duplicate_of,
    canonical_incident_id: after.canonical_incident_id,
    release_sha: after.release_sha,
    severity: after.severity,
    ...present('category', after.category),
    assignee: after.assignee,
    sla_due_at: after.sla_due_at,
    ...present('title', after.title),
    ...present('short_id', after.short_id),
    ...present('trace_id', after.trace_id),
    ...present('request_id', after.request_id),
    issue: snapshotOf(after),
  };
}

const STATUS_CODE: Record<GroupStatus, 0 | 1 | 2> = { unresolved: 0, resolved: 1, ignored: 2 };
const NEW_STATUS = { unresolve: 0, resolve: 1, ignore: 2 } as const;

/**
 * The status change for grouping, keyed `project_id:primary fingerprint` like the group's other
 * status changes; `expect` carries the resolution id only when it expects resolved and grouping last
 * reported it resolved (otherwise lifecycle cannot know which resolution the group holds).
 */
export function groupStatusChange(
  eventId: string,
  request: GroupRequest,
  after: IssueRow,
  cmd: LifecycleCommand,
): { key: string; value: StatusChange } {
  const fingerprint = after.primary_fingerprint ?? `issue:${after.id}`;
  const resolution =
    request.action === 'resolve'
      ? {
          type: request.resolution.type,
          ...present('release', request.resolution.release),
          ...present('current_release_version', request.resolution.current_release),
          ...present('commit', request.resolution.commit_shas?.[0]),
        }
      : undefined;
  return {
    key: `${after.project_id}:${fingerprint}`,
    value: {
      id: eventId,
      fingerprint: [fingerprint],
      project_id: after.project_id,
      new_status: NEW_STATUS[request.action],
      update_date: after.updated_at,
      shoal: {
        group_id: after.id,
        expect: {
          status: STATUS_CODE[request.expect],
          ...(request.expect === 'resolved' &&
          after.group_status === 'resolved' &&
          after.group_sequence >= 0
            ? { resolution_id: after.group_resolution_id }
            : {}),
        },
        ...(resolution ? { resolution } : {}),
        decided_by: 'lifecycle',
        ...present('trace_id', cmd.trace_id ?? after.trace_id),
        ...present('request_id', cmd.request_id),
      },
    },
  };
}
