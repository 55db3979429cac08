import type { LifecycleCommand, LifecycleEvent } from '@shoal/contracts';
import {
  claimCheck,
  ENDS_CLAIM,
  groupChangeEffect,
  groupNoopEffect,
  holderCheck,
  LEASE,
  leaseSecondsValid,
  moveCheck,
  resolutionProblem,
  severityOfLevel,
  slaDueAt,
  statusChangeFor,
  statusFromGroup,
  TRANSITIONS,
  versionCheck,
  type Asker,
  type Check,
  type CloseReason,
  type GroupRequest,
  type IssueState,
  type IssueStatus,
  type Resolution,
  type SlaMs,
} from '../transitions.js';
import type { IssueRow } from './rows.js';

/**
 * One command against one issue, decided without I/O: the rules are transitions.ts's, the clock is
 * the command's `issued_at`, never earlier than the last one applied to the issue (`clock`), so a
 * replay of the log decides the same. Returns the outcome and the issue after it:
 * - applied, with the lifecycle event it causes (version +1) unless it changes only the read model
 *   (observe, an echo of grouping), and for an agent's move the status change grouping must apply;
 * - ignored: a no-op (an older group status, a renewed lease's expiry, an issue opened twice, a
 *   system command for a deleted issue);
 * - rejected: a refusal, with the moves that were allowed;
 * - early: a system command for an issue whose open has not come yet (decided right after it);
 * - stale: an agent's command for a deleted issue (the runtime's lookup catches most before the
 *   handler; this catches one whose deletion was applied earlier in the same batch).
 */

export type EventType = LifecycleEvent['event_type'];

export interface LifecycleChange {
  type: EventType;
  /** What the command carried beyond the move (history details). */
  details: Record<string, unknown>;
}

export type Decision =
  | { kind: 'applied'; row: IssueRow; event?: LifecycleChange; group?: GroupRequest | null }
  | { kind: 'ignored'; row?: IssueRow; reason: string; detail: string }
  | {
      kind: 'rejected';
      row?: IssueRow;
      reason: string;
      detail: string;
      allowed: IssueStatus[];
    }
  | { kind: 'early' }
  /** An agent's command for a deleted issue: stale_reference(issue), dead-lettered by policy. */
  | { kind: 'stale'; deletedAt: string };

/** Commands only the system (intake, the sweeper) sends. */
export const SYSTEM_COMMANDS: ReadonlySet<LifecycleCommand['command']> = new Set([
  'open',
  'observe',
  'sync_status',
  'delete',
  'hide',
  'unhide',
  'set_duplicate',
  'expire_claim',
  'cleanup_orphans',
]);

const SHA256 = /^[0-9a-f]{64}$/;

const ms = (iso: string | null): number | null => (iso === null ? null : Date.parse(iso));
const isoOf = (epochMs: number) => new Date(epochMs).toISOString();

export const issueState = (row: IssueRow): IssueState => ({
  status: row.status,
  version: row.version,
  claimedBy: row.claimed_by,
  claimTokenSha256: row.claim_token_sha256,
  claimExpiresAt: ms(row.claim_expires_at),
});

const askerOf = (cmd: LifecycleCommand): Asker => ({
  actor: cmd.actor,
  admin: cmd.admin === true,
  system: cmd.origin === 'system',
  claimTokenSha256: cmd.claim_token ?? null,
});

const withoutClaim = (row: IssueRow): IssueRow => ({
  ...row,
  claimed_by: null,
  claim_token_sha256: null,
  claim_expires_at: null,
});

/** The resolution a command gives: `resolution`, or the deprecated `release` / `commit_shas`. */
function resolutionOf(cmd: LifecycleCommand): Resolution | undefined {
  if (cmd.resolution) return cmd.resolution;
  if (cmd.release) return { type: 'in_release', release: cmd.release };
  if (cmd.commit_shas?.length) return { type: 'in_commit', commit_shas: cmd.commit_shas };
  return undefined;
}

export function decide(row: IssueRow | undefined, cmd: LifecycleCommand, sla: SlaMs): Decision {
  const issued = Date.parse(cmd.issued_at);
  const now = row ? Math.max(Date.parse(row.clock), issued) : issued;
  const at = isoOf(now);
  const asker = askerOf(cmd);
  const system = SYSTEM_COMMANDS.has(cmd.command);

  const invalid = (detail: string, current = row): Decision => ({
    kind: 'rejected',
    row: current && { ...current, clock: at },
    reason: 'invalid_command',
    detail,
    allowed: [],
  });
  if (system && !asker.system) return invalid(`${cmd.command} is a system command`);
  if (!row) {
    if (cmd.command === 'open') return open(cmd, at, now, sla);
    if (system) return { kind: 'early' };
    return {
      kind: 'rejected',
      reason: 'unknown_issue',
      detail: `issue ${cmd.issue_id} was never opened`,
      allowed: [],
    };
  }
  const base: IssueRow = { ...row, clock: at };
  const ignored = (reason: string, detail: string, current = base): Decision => ({
    kind: 'ignored',
    row: current,
    reason,
    detail,
  });
  if (cmd.command === 'open') return ignored('already_open', `issue ${row.id} is open already`);
  if (row.deleted_at !== null) {
    if (system) return ignored('stale_reference', `issue ${row.id} was deleted`);
    return { kind: 'stale', deletedAt: row.deleted_at };
  }
  if (!system && row.hidden)
    return {
      kind: 'rejected',
      row: base,
      reason: 'hidden',
      detail: `issue ${row.id} is hidden (its project is deleted)`,
      allowed: [],
    };

  const state = issueState(row);
  const refused = (check: Check): Decision | undefined =>
    check.ok
      ? undefined
      : {
          kind: 'rejected',
          row: base,
          reason: check.reason,
          detail: check.detail,
          allowed: check.allowed,
        };
  const refusedVersion = refused(versionCheck(state, cmd.expected_version, asker, now));
  if (refusedVersion) return refusedVersion;

  /** An applied change with its lifecycle event: version +1, the status's start when it moved. */
  const applied = (
    next: IssueRow,
    type: EventType,
    details: Record<string, unknown> = {},
    group?: GroupRequest | null,
  ): Decision => ({
    kind: 'applied',
    row: {
      ...next,
      version: row.version + 1,
      updated_at: at,
      status_since: next.status === row.status ? row.status_since : at,
    },
    event: { type, details: withNote(details, cmd) },
    group,
  });

  /** An agent's (or the system's) move through the table, with what entering `to` implies. */
  const move = (
    to: IssueStatus,
    extra: { closeReason?: CloseReason; duplicateOf?: number; resolution?: Resolution } = {},
  ): Decision => {
    const rejected = refused(moveCheck(state, to, asker, now));
    if (rejected) return rejected;
    const problem = extra.resolution && resolutionProblem(extra.resolution);
    if (problem) return invalid(problem);
    let next: IssueRow = { ...base, status: to, release_sha: cmd.release_sha ?? base.release_sha };
    if (to === 'resolved' || to === 'awaiting_verification') {
      const kept = row.status === 'awaiting_verification' ? row.resolution : null;
      next = {
        ...next,
        resolution: extra.resolution ?? kept ?? { type: 'in_next_release' },
        close_reason: null,
      };
    } else if (to === 'closed') {
      next = {
        ...next,
        close_reason: extra.closeReason ?? 'fixed',
        duplicate_of: extra.duplicateOf ?? next.duplicate_of,
      };
    } else next = { ...next, resolution: null, close_reason: null };
    if (ENDS_CLAIM.has(to)) next = withoutClaim(next);
    const group = asker.system
      ? null
      : statusChangeFor(
          { status: row.status, closeReason: row.close_reason, resolution: row.resolution },
          { status: to, closeReason: next.close_reason, resolution: next.resolution },
        );
    const type = TRANSITIONS[row.status].find((m) => m.to === to)?.eventType ?? 'transitioned';
    return applied(
      next,
      type,
      {
        ...(next.resolution && next.resolution !== row.resolution
          ? { resolution: next.resolution }
          : {}),
        ...(next.close_reason ? { close_reason: next.close_reason } : {}),
        ...(extra.duplicateOf ? { duplicate_of: extra.duplicateOf } : {}),
      },
      group,
    );
  };

  const lease = (): number | undefined => {
    const seconds = cmd.lease_seconds ?? LEASE.defaultSeconds;
    return leaseSecondsValid(seconds) ? seconds : undefined;
  };

  switch (cmd.command) {
    case 'claim': {
      const seconds = lease();
      if (!cmd.claim_token || !SHA256.test(cmd.claim_token))
        return invalid(
          'claim needs claim_token: the SHA-256 of the token, 64 lowercase hex digits',
        );
      if (seconds === undefined)
        return invalid(`lease_seconds must be ${LEASE.minSeconds} to ${LEASE.maxSeconds}`);
      const rejected = refused(claimCheck(state, asker, now));
      if (rejected) return rejected;
      return applied(
        {
          ...base,
          claimed_by: cmd.actor,
          claim_token_sha256: cmd.claim_token,
          claim_expires_at: isoOf(now + seconds * 1000),
          claim_generation: row.claim_generation + 1,
        },
        'claimed',
        { lease_seconds: seconds },
      );
    }
    case 'renew': {
      const seconds = lease();
      if (seconds === undefined)
        return invalid(`lease_seconds must be ${LEASE.minSeconds} to ${LEASE.maxSeconds}`);
      const rejected = refused(holderCheck(state, asker, now, { adminMay: false }));
      if (rejected) return rejected;
      return applied({ ...base, claim_expires_at: isoOf(now + seconds * 1000) }, 'claim_renewed', {
        lease_seconds: seconds,
      });
    }
    case 'release': {
      const rejected = refused(holderCheck(state, asker, now, { adminMay: true }));
      if (rejected) return rejected;
      const forced = cmd.claim_token !== row.claim_token_sha256;
      return applied(
        { ...withoutClaim(base), status: row.status === 'in_progress' ? 'triaged' : row.status },
        'released',
        { claimed_by: row.claimed_by, ...(forced ? { forced: true } : {}) },
      );
    }
    case 'transition':
      if (!cmd.to_status) return invalid('transition needs to_status');
      return move(cmd.to_status, { closeReason: cmd.close_reason, resolution: resolutionOf(cmd) });
    case 'resolve': {
      const to = cmd.to_status ?? 'resolved';
      if (to !== 'resolved' && to !== 'awaiting_verification')
        return invalid('resolve moves to resolved or awaiting_verification');
      return move(to, { resolution: resolutionOf(cmd) ?? { type: 'in_next_release' } });
    }
    case 'reopen':
      return move('triaged');
    case 'mark_duplicate':
      if (cmd.duplicate_of == null || cmd.duplicate_of === row.id)
        return invalid('mark_duplicate needs duplicate_of: another issue');
      return move('closed', { closeReason: 'duplicate', duplicateOf: cmd.duplicate_of });
    case 'add_note':
      if (!cmd.note) return invalid('add_note needs a note');
      return applied(base, 'note_added');
    case 'attach_event':
      if (!cmd.run_event && !cmd.event) return invalid('attach_event needs run_event');
      return applied(base, 'event_attached', {
        ...(cmd.run_event ? { run_event: cmd.run_event } : { event: cmd.event }),
      });
    case 'update':
      return update(cmd, base, sla, applied, invalid);
    case 'observe':
      return { kind: 'applied', row: observed(base, cmd, sla) };
    case 'sync_status':
      return syncStatus(cmd, row, base, now, sla, applied, ignored, invalid);
    case 'delete':
      return applied({ ...withoutClaim(base), deleted_at: at }, 'deleted');
    // the handler decides it only for an issue the `orphans` view still lists (orphans.ts)
    case 'cleanup_orphans':
      return applied({ ...withoutClaim(base), deleted_at: at }, 'deleted', {
        orphan_cleanup: cmd.reason === undefined ? {} : { reason: cmd.reason },
      });
    case 'hide':
    case 'unhide': {
      const hidden = cmd.command === 'hide';
      if (row.hidden === hidden)
        return ignored('unchanged', `issue ${row.id} is ${hidden ? 'hidden' : 'shown'} already`);
      return applied({ ...base, hidden }, hidden ? 'hidden' : 'unhidden', {
        project_id: row.project_id,
      });
    }
    case 'set_duplicate': {
      const duplicateOf = cmd.duplicate_of === row.id ? null : (cmd.duplicate_of ?? null);
      const incident = cmd.incident_id ?? null;
      if (duplicateOf === row.duplicate_of && incident === row.canonical_incident_id)
        return ignored('unchanged', 'the same duplicate link');
      return applied(
        { ...base, duplicate_of: duplicateOf, canonical_incident_id: incident },
        'duplicate_changed',
        { duplicate_of: duplicateOf, canonical_incident_id: incident },
      );
    }
    case 'expire_claim': {
      if (row.claimed_by === null || row.claim_generation !== cmd.claim_generation)
        return ignored('claim_ended', `claim ${cmd.claim_generation ?? '?'} is no longer held`);
      if (now < Date.parse(row.claim_expires_at!))
        return ignored('lease_live', `the lease runs to ${row.claim_expires_at}`);
      // the token's hash stays, so its holder is told lease_expired rather than not claimed
      return applied(
        {
          ...withoutClaim(base),
          claim_token_sha256: row.claim_token_sha256,
          status: row.status === 'in_progress' ? 'triaged' : row.status,
        },
        'claim_expired',
        { claimed_by: row.claimed_by, claim_generation: row.claim_generation },
      );
    }
  }
}

const withNote = (details: Record<string, unknown>, cmd: LifecycleCommand) =>
  cmd.note ? { note: cmd.note, ...details } : details;

/** open: a new issue from its group_created (status new, version 1, severity from level, SLA from now). */
function open(cmd: LifecycleCommand, at: string, now: number, sla: SlaMs): Decision {
  const g = cmd.group ?? {};
  if (cmd.project_id === undefined)
    return {
      kind: 'rejected',
      reason: 'invalid_command',
      detail: 'open needs project_id',
      allowed: [],
    };
  const severity = severityOfLevel(g.level);
  const row: IssueRow = {
    id: cmd.issue_id,
    project_id: cmd.project_id,
    status: 'new',
    version: 1,
    severity,
    severity_set: false,
    category: null,
    assignee: null,
    claimed_by: null,
    claim_token_sha256: null,
    claim_expires_at: null,
    claim_generation: 0,
    sla_due_at: isoOf(slaDueAt(severity, now, sla)),
    sla_since: at,
    sla_set: false,
    trace_id: g.trace_id ?? null,
    request_id: null,
    release_sha: cmd.release_sha ?? null,
    resolution: null,
    close_reason: null,
    duplicate_of: null,
    canonical_incident_id: null,
    title: g.title ?? null,
    short_id: g.short_id ?? null,
    culprit: g.culprit ?? null,
    level: g.level ?? null,
    primary_fingerprint: g.primary_fingerprint ?? null,
    environment: g.environment ?? null,
    release: g.release ?? null,
    times_seen: g.times_seen ?? 0,
    first_seen: g.first_seen ? isoOf(Date.parse(g.first_seen)) : null,
    last_seen: g.last_seen ? isoOf(Date.parse(g.last_seen)) : null,
    group_status: 'unresolved',
    group_resolution_id: 0,
    group_sequence: -1,
    group_request_id: null,
    opened_at: at,
    status_since: at,
    updated_at: at,
    clock: at,
    hidden: false,
    deleted_at: null,
  };
  return { kind: 'applied', row, event: { type: 'created', details: {} } };
}

const later = (a: string | null, b: string | undefined): string | null =>
  b === undefined ? a : a === null || Date.parse(b) > Date.parse(a) ? isoOf(Date.parse(b)) : a;
const earlier = (a: string | null, b: string | undefined): string | null =>
  b === undefined ? a : a === null || Date.parse(b) < Date.parse(a) ? isoOf(Date.parse(b)) : a;

/** observe: the group's telemetry into the read model; no event, no version (the next event's snapshot shows it). */
function observed(row: IssueRow, cmd: LifecycleCommand, sla: SlaMs): IssueRow {
  const g = cmd.group ?? {};
  const level = g.level ?? row.level;
  const severity = row.severity_set ? row.severity : severityOfLevel(level);
  return {
    ...row,
    times_seen: Math.max(
      row.times_seen,
      g.times_seen ?? row.times_seen + (g.times_seen_delta ?? 0),
    ),
    first_seen: earlier(row.first_seen, g.first_seen),
    last_seen: later(row.last_seen, g.last_seen),
    level,
    severity,
    // the SLA follows a severity the level moved, as it follows an update's (unless set)
    sla_due_at:
      severity !== row.severity && !row.sla_set
        ? isoOf(slaDueAt(severity, Date.parse(row.sla_since), sla))
        : row.sla_due_at,
    title: g.title ?? row.title,
    culprit: g.culprit === undefined ? row.culprit : g.culprit,
    release: g.release === undefined ? row.release : g.release,
    environment: g.environment === undefined ? row.environment : g.environment,
    trace_id: g.trace_id ?? row.trace_id,
  };
}

type Applied = (
  next: IssueRow,
  type: EventType,
  details?: Record<string, unknown>,
  group?: GroupRequest | null,
) => Decision;

/**
 * update: the fields an agent may set. Severity stays set; a new severity moves the SLA due time to
 * the SLA's start (open or last regression) + the severity's SLA, unless an agent set the due time
 * (`sla_set`, here or before).
 */
function update(
  cmd: LifecycleCommand,
  base: IssueRow,
  sla: SlaMs,
  applied: Applied,
  invalid: (detail: string) => Decision,
): Decision {
  const slaSet = base.sla_set || cmd.sla_due_at !== undefined;
  const recomputed =
    cmd.severity !== undefined && cmd.severity !== base.severity && !slaSet
      ? isoOf(slaDueAt(cmd.severity, Date.parse(base.sla_since), sla))
      : undefined;
  const fields = {
    severity: cmd.severity,
    category: cmd.category,
    assignee: cmd.assignee,
    sla_due_at:
      cmd.sla_due_at === undefined || cmd.sla_due_at === null
        ? (cmd.sla_due_at ?? recomputed)
        : isoOf(Date.parse(cmd.sla_due_at)),
    trace_id: cmd.trace_id,
    request_id: cmd.request_id,
    release_sha: cmd.release_sha,
  };
  const given = Object.entries(fields).filter(([, v]) => v !== undefined);
  if (given.length === 0) return invalid('update needs a field to set');
  const changed = Object.fromEntries(
    given.map(([k, v]) => [k, { from: base[k as keyof IssueRow], to: v }]),
  );
  return applied(
    {
      ...base,
      ...Object.fromEntries(given),
      severity_set: base.severity_set || cmd.severity !== undefined,
      sla_set: slaSet,
    },
    'updated',
    { changed },
  );
}

/** sync_status: grouping's status_changed (issue 16: older ignored; an echo recorded, the claim kept; else the issue follows and a claim ends). */
function syncStatus(
  cmd: LifecycleCommand,
  row: IssueRow,
  base: IssueRow,
  now: number,
  sla: SlaMs,
  applied: Applied,
  ignored: (reason: string, detail: string, current?: IssueRow) => Decision,
  invalid: (detail: string) => Decision,
): Decision {
  const change = cmd.group_status;
  if (!change) return invalid('sync_status needs group_status');
  if (change.noop) return reconcile(cmd, row, base, applied, ignored);
  const effect = groupChangeEffect(
    {
      status: row.status,
      closeReason: row.close_reason,
      groupSequence: row.group_sequence,
      groupResolutionId: row.group_resolution_id,
    },
    {
      status: change.status,
      sequence: change.sequence,
      resolutionId: change.resolution_id,
      decidedBy: change.decided_by,
    },
  );
  if (effect === 'stale')
    return ignored(
      'stale_status',
      `sequence ${change.sequence} is not after ${row.group_sequence}`,
    );
  const seen = seenGroup(base, row, change);
  if (effect === 'echo')
    return ignored('echo', `the group is ${change.status}, as the issue implies`, seen);
  const to = statusFromGroup(change.status, change.decided_by);
  const next: IssueRow = {
    ...followGroup(seen, row, to, cmd.resolution),
    // a regression restarts the SLA, an agent's due time included
    ...(to.status === 'regressed'
      ? {
          sla_due_at: isoOf(slaDueAt(row.severity, now, sla)),
          sla_since: isoOf(now),
          sla_set: false,
        }
      : {}),
  };
  return applied(next, followedType(row.status, to.status), {
    group_status: change.status,
    sequence: change.sequence,
    ...(change.decided_by ? { decided_by: change.decided_by } : {}),
    ...(next.resolution && to.status === 'resolved' ? { resolution: next.resolution } : {}),
  });
}

/**
 * sync_status with `noop`: grouping did not apply lifecycle's conditional change `change_id` and
 * holds `status`. Unless lifecycle asked again since, or the group moved since, the issue follows
 * the group as it would an upstream change (recorded in history as reconciled, a claim ends, nothing
 * sent back): issue and group agree again.
 */
function reconcile(
  cmd: LifecycleCommand,
  row: IssueRow,
  base: IssueRow,
  applied: Applied,
  ignored: (reason: string, detail: string, current?: IssueRow) => Decision,
): Decision {
  const change = cmd.group_status!;
  const effect = groupNoopEffect(
    {
      status: row.status,
      closeReason: row.close_reason,
      groupSequence: row.group_sequence,
      groupRequestId: row.group_request_id,
    },
    { status: change.status, sequence: change.sequence, changeId: change.change_id },
  );
  if (effect === 'superseded')
    return ignored('superseded', `change ${change.change_id ?? '?'} is not the last one sent`);
  if (effect === 'stale')
    return ignored('stale_status', `sequence ${change.sequence} is before ${row.group_sequence}`);
  const seen = seenGroup(base, row, change);
  if (effect === 'agrees')
    return ignored('echo', `the group is ${change.status}, as the issue implies`, seen);
  const to = statusFromGroup(change.status, undefined);
  const next = followGroup(seen, row, to, cmd.resolution);
  return applied(next, followedType(row.status, to.status), {
    group_status: change.status,
    sequence: change.sequence,
    reconciled: change.change_id,
  });
}

type GroupStatus = NonNullable<LifecycleCommand['group_status']>;

/** The issue knowing what grouping says of its group: status, sequence, resolution number. */
const seenGroup = (base: IssueRow, row: IssueRow, change: GroupStatus): IssueRow => ({
  ...base,
  group_status: change.status,
  group_sequence: change.sequence,
  group_resolution_id: change.resolution_id ?? row.group_resolution_id,
});

/**
 * The issue moved where its group's status puts it (`to`): the claim ends; resolved takes the
 * change's resolution (or now), closed keeps its own, any other status has none.
 */
const followGroup = (
  seen: IssueRow,
  row: IssueRow,
  to: ReturnType<typeof statusFromGroup>,
  resolution: LifecycleCommand['resolution'],
): IssueRow => ({
  ...withoutClaim(seen),
  status: to.status,
  close_reason: to.closeReason,
  resolution:
    to.status === 'resolved'
      ? (resolution ?? { type: 'now' })
      : to.status === 'closed'
        ? row.resolution
        : null,
});

/** The event of an issue following its group from `from` to `to`. */
const followedType = (from: IssueStatus, to: IssueStatus): EventType =>
  to === 'triaged' && ['resolved', 'closed', 'awaiting_verification'].includes(from)
    ? 'reopened'
    : to === 'triaged'
      ? 'transitioned'
      : (to as 'resolved' | 'closed' | 'regressed');
