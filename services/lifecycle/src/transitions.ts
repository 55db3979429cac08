/**
 * The issue lifecycle's rules, pure and in one place: the agent API pre-checks with them (so
 * nothing it can tell is invalid reaches the topic) and the decide consumer decides with them (so
 * what the API promised is what happens). No I/O, no clock: every time is passed in.
 *
 * - `moveCheck`: may `actor` move an issue from its status to another (the transition table, ¹ the
 *   claim, ² system only, admin-only reopen of a closed issue, "while claimed only the holder or an
 *   admin")? Refusals name the reason and the moves that were allowed.
 * - `claimCheck` / `renewCheck` / `releaseCheck`: leases (claimable states, no live lease, the
 *   holder's token by its SHA-256).
 * - `impliedGroupStatus` / `statusChangeFor`: what grouping should hold for an issue state, and the
 *   conditional status change lifecycle sends when an agent's move changes it.
 * - `groupChangeEffect` / `groupNoopEffect`: what grouping's status_changed, or its no-op answer
 *   to lifecycle's change, does to an issue.
 * - `severityOfLevel`, `slaDueAt`: severity until set, SLA due per severity.
 */
import type { LifecycleCommand } from '@shoal/contracts';

export const ISSUE_STATUSES = [
  'new',
  'triaged',
  'in_progress',
  'awaiting_verification',
  'resolved',
  'closed',
  'regressed',
] as const;
export type IssueStatus = (typeof ISSUE_STATUSES)[number];

export const CLOSE_REASONS = ['fixed', 'ignored', 'duplicate', 'wont_fix'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export type Severity = (typeof SEVERITIES)[number];

export type GroupStatus = 'unresolved' | 'resolved' | 'ignored';

/** How an issue is resolved: the command's `resolution`, stored and published as given. */
export type Resolution = NonNullable<LifecycleCommand['resolution']>;

export interface Move {
  to: IssueStatus;
  /** ¹ only the holder of a live claim makes it */
  needsClaim?: true;
  /** ² only the system (grouping's status_changed decided by regression) makes it */
  systemOnly?: true;
  /** reopening a closed issue takes the admin scope */
  adminOnly?: true;
  /** the event it publishes when not `transitioned` */
  eventType?: 'reopened' | 'regressed' | 'resolved' | 'closed';
}

/** The transition table of issue 16 (¹ needsClaim, ² systemOnly). */
export const TRANSITIONS: Readonly<Record<IssueStatus, readonly Move[]>> = {
  new: [
    { to: 'triaged' },
    { to: 'in_progress', needsClaim: true },
    { to: 'resolved', eventType: 'resolved' },
    { to: 'closed', eventType: 'closed' },
  ],
  triaged: [
    { to: 'in_progress', needsClaim: true },
    { to: 'resolved', eventType: 'resolved' },
    { to: 'closed', eventType: 'closed' },
  ],
  in_progress: [
    { to: 'awaiting_verification', needsClaim: true },
    { to: 'resolved', needsClaim: true, eventType: 'resolved' },
    { to: 'triaged', needsClaim: true },
  ],
  awaiting_verification: [
    { to: 'resolved', eventType: 'resolved' },
    { to: 'in_progress', needsClaim: true },
    { to: 'regressed', systemOnly: true, eventType: 'regressed' },
  ],
  resolved: [
    { to: 'closed', eventType: 'closed' },
    { to: 'triaged', eventType: 'reopened' },
    { to: 'regressed', systemOnly: true, eventType: 'regressed' },
  ],
  closed: [
    { to: 'triaged', adminOnly: true, eventType: 'reopened' },
    { to: 'regressed', systemOnly: true, eventType: 'regressed' },
  ],
  regressed: [
    { to: 'triaged' },
    { to: 'in_progress', needsClaim: true },
    { to: 'resolved', eventType: 'resolved' },
    { to: 'closed', eventType: 'closed' },
  ],
};

/** States an issue may be claimed in (when no live lease holds it). */
export const CLAIMABLE: ReadonlySet<IssueStatus> = new Set([
  'new',
  'triaged',
  'regressed',
  'awaiting_verification',
]);

/** Entering one of these ends a claim (the work is handed over or done). */
export const ENDS_CLAIM: ReadonlySet<IssueStatus> = new Set([
  'awaiting_verification',
  'resolved',
  'closed',
]);

/** Open (`status=open` in the API) and done (`status=done`). */
export const OPEN_STATUSES: readonly IssueStatus[] = [
  'new',
  'triaged',
  'in_progress',
  'awaiting_verification',
  'regressed',
];
export const DONE_STATUSES: readonly IssueStatus[] = ['resolved', 'closed'];

export const LEASE = { defaultSeconds: 300, minSeconds: 1, maxSeconds: 3600 } as const;

/** The part of an issue the rules read. Times are epoch milliseconds. */
export interface IssueState {
  status: IssueStatus;
  version: number;
  claimedBy: string | null;
  claimTokenSha256: string | null;
  claimExpiresAt: number | null;
}

/** Who asks, as the command says (the API sets actor and admin from the token). */
export interface Asker {
  actor: string;
  admin: boolean;
  system: boolean;
  /** SHA-256 (hex) of the claim token the asker presents, if any */
  claimTokenSha256?: string | null;
}

/** Why a command is refused (the API answers 409, or 412 for version_conflict). */
export type Refusal =
  'invalid_transition' | 'claim_conflict' | 'lease_expired' | 'version_conflict';

export type Check =
  { ok: true } | { ok: false; reason: Refusal; detail: string; allowed: IssueStatus[] };

/** A lease is live until its expiry (exclusive): at `expiresAt` it is gone. */
export const leaseLive = (issue: IssueState, now: number): boolean =>
  issue.claimedBy !== null && issue.claimExpiresAt !== null && now < issue.claimExpiresAt;

/** The asker presents the token of a lease that lapsed (an expired claim keeps its token's hash for this). */
const presentsLapsedToken = (issue: IssueState, asker: Asker): boolean =>
  issue.claimTokenSha256 !== null && asker.claimTokenSha256 === issue.claimTokenSha256;

const holds = (issue: IssueState, asker: Asker, now: number): boolean =>
  leaseLive(issue, now) &&
  asker.claimTokenSha256 != null &&
  asker.claimTokenSha256 === issue.claimTokenSha256;

/**
 * The moves this asker could make now (what a 409 lists): the table's, minus system-only ones for
 * agents, admin-only ones for non-admins, claim-needing ones without the claim, and all of them
 * for anyone but the holder or an admin while a live claim holds the issue.
 */
export function allowedMoves(issue: IssueState, asker: Asker, now: number): IssueStatus[] {
  if (asker.system) return TRANSITIONS[issue.status].map((m) => m.to);
  const claimedByOther = leaseLive(issue, now) && !holds(issue, asker, now);
  if (claimedByOther && !asker.admin) return [];
  return TRANSITIONS[issue.status]
    .filter(
      (m) =>
        !m.systemOnly &&
        (!m.adminOnly || asker.admin) &&
        (!m.needsClaim || holds(issue, asker, now)),
    )
    .map((m) => m.to);
}

function refuse(
  reason: Refusal,
  detail: string,
  issue: IssueState,
  asker: Asker,
  now: number,
): Check {
  return { ok: false, reason, detail, allowed: allowedMoves(issue, asker, now) };
}

/** `expected_version` (optimistic concurrency): absent always matches. */
export function versionCheck(
  issue: IssueState,
  expected: number | undefined,
  asker: Asker,
  now: number,
): Check {
  if (expected === undefined || expected === issue.version) return { ok: true };
  return refuse(
    'version_conflict',
    `expected version ${expected}, the issue is at ${issue.version}`,
    issue,
    asker,
    now,
  );
}

/** May `asker` move `issue` to `to` at `now`? Anything the table lacks, even to the same status, is invalid_transition. */
export function moveCheck(issue: IssueState, to: IssueStatus, asker: Asker, now: number): Check {
  const move = TRANSITIONS[issue.status].find((m) => m.to === to);
  if (
    !move ||
    (move.systemOnly && !asker.system) ||
    (move.adminOnly && !asker.admin && !asker.system)
  )
    return refuse(
      'invalid_transition',
      `${issue.status} → ${to} is not allowed${move?.systemOnly ? ' (system only)' : move?.adminOnly ? ' (admin only)' : ''}`,
      issue,
      asker,
      now,
    );
  if (asker.system) return { ok: true };
  const live = leaseLive(issue, now);
  if (live && !holds(issue, asker, now) && !asker.admin)
    return refuse('claim_conflict', `claimed by ${issue.claimedBy}`, issue, asker, now);
  if (move.needsClaim && !holds(issue, asker, now)) {
    if (!live && presentsLapsedToken(issue, asker))
      return refuse('lease_expired', `the lease expired`, issue, asker, now);
    return live
      ? refuse('claim_conflict', `claimed by ${issue.claimedBy}`, issue, asker, now)
      : refuse('invalid_transition', `${issue.status} → ${to} needs the claim`, issue, asker, now);
  }
  return { ok: true };
}

/** May `asker` claim `issue` at `now`? */
export function claimCheck(issue: IssueState, asker: Asker, now: number): Check {
  if (!CLAIMABLE.has(issue.status))
    return refuse('invalid_transition', `${issue.status} cannot be claimed`, issue, asker, now);
  if (leaseLive(issue, now))
    return refuse('claim_conflict', `claimed by ${issue.claimedBy}`, issue, asker, now);
  return { ok: true };
}

/** May `asker` renew (extend from `now`) or release the claim? Only its holder; an admin may force a release. */
export function holderCheck(
  issue: IssueState,
  asker: Asker,
  now: number,
  { adminMay }: { adminMay: boolean },
): Check {
  if (holds(issue, asker, now) || (adminMay && asker.admin && leaseLive(issue, now)))
    return { ok: true };
  if (leaseLive(issue, now))
    return refuse('claim_conflict', `claimed by ${issue.claimedBy}`, issue, asker, now);
  if (presentsLapsedToken(issue, asker))
    return refuse('lease_expired', 'the lease expired', issue, asker, now);
  return refuse('invalid_transition', 'the issue is not claimed', issue, asker, now);
}

/** Clamp-free check of a requested lease length. */
export const leaseSecondsValid = (seconds: number): boolean =>
  Number.isSafeInteger(seconds) && seconds >= LEASE.minSeconds && seconds <= LEASE.maxSeconds;

/** The status a state implies for its group (grouping holds it). */
export function impliedGroupStatus(
  status: IssueStatus,
  closeReason: CloseReason | null,
): GroupStatus {
  switch (status) {
    case 'awaiting_verification':
    case 'resolved':
      return 'resolved';
    case 'closed':
      return closeReason === null || closeReason === 'fixed' ? 'resolved' : 'ignored';
    default:
      return 'unresolved';
  }
}

/** What lifecycle asks grouping for when an agent's move enters `to` (issue 16's table). */
export type GroupRequest =
  | { action: 'unresolve'; expect: GroupStatus }
  | { action: 'resolve'; expect: GroupStatus; resolution: Resolution }
  | { action: 'ignore'; expect: GroupStatus };

/**
 * The conditional status change for grouping when an agent's move takes an issue from `from` to
 * `to`; null when the group already holds what `to` implies (closed fixed after resolved, resolved
 * by the same resolution). `expect` is the status the previous state implied.
 */
export function statusChangeFor(
  from: { status: IssueStatus; closeReason: CloseReason | null; resolution: Resolution | null },
  to: { status: IssueStatus; closeReason: CloseReason | null; resolution: Resolution | null },
): GroupRequest | null {
  const before = impliedGroupStatus(from.status, from.closeReason);
  const after = impliedGroupStatus(to.status, to.closeReason);
  if (after === 'unresolved')
    return before === 'unresolved' ? null : { action: 'unresolve', expect: before };
  if (after === 'ignored')
    return before === 'ignored' ? null : { action: 'ignore', expect: before };
  const resolution = to.resolution ?? { type: 'in_next_release' };
  if (
    before === 'resolved' &&
    (to.status === 'closed' || sameResolution(from.resolution, resolution))
  )
    return null;
  return { action: 'resolve', expect: before, resolution };
}

function sameResolution(a: Resolution | null, b: Resolution): boolean {
  return (
    a !== null &&
    a.type === b.type &&
    (a.release ?? null) === (b.release ?? null) &&
    (a.commit_shas ?? []).join() === (b.commit_shas ?? []).join()
  );
}

/** An issue's state after grouping's status_changed moved its group (issue 16: resolved → resolved, ignored → closed ignored, unresolved → triaged, or regressed when regression decided it). */
export function statusFromGroup(
  group: GroupStatus,
  decidedBy: 'upstream' | 'lifecycle' | 'regression' | undefined,
): { status: IssueStatus; closeReason: CloseReason | null } {
  if (group === 'resolved') return { status: 'resolved', closeReason: null };
  if (group === 'ignored') return { status: 'closed', closeReason: 'ignored' };
  return { status: decidedBy === 'regression' ? 'regressed' : 'triaged', closeReason: null };
}

/** Severity from a group's level until someone sets it: fatal critical, error high, warning medium, else low. */
export function severityOfLevel(level: string | null | undefined): Severity {
  switch (level) {
    case 'fatal':
      return 'critical';
    case 'error':
      return 'high';
    case 'warning':
      return 'medium';
    default:
      return 'low';
  }
}

/** SLA length per severity, milliseconds. */
export type SlaMs = Readonly<Record<Severity, number>>;

export const DEFAULT_SLA_MS: SlaMs = {
  critical: 4 * 3_600_000,
  high: 24 * 3_600_000,
  medium: 72 * 3_600_000,
  low: 7 * 86_400_000,
};

/** SLA due = opened (or regressed) time + the severity's SLA. */
export const slaDueAt = (severity: Severity, since: number, sla: SlaMs): number =>
  since + sla[severity];

/** Grouping's status_changed as the issue's rules read it. */
export interface GroupChange {
  status: GroupStatus;
  sequence: number;
  resolutionId?: number;
  decidedBy?: 'upstream' | 'lifecycle' | 'regression';
}

/**
 * What a status_changed does to an issue: `stale` (not newer than the last applied for the group:
 * ignored), `echo` (what the issue already implies, or lifecycle's own request come back: recorded,
 * the claim kept) or `move` (the issue follows the group, `statusFromGroup`, and a claim ends).
 */
export function groupChangeEffect(
  issue: {
    status: IssueStatus;
    closeReason: CloseReason | null;
    groupSequence: number;
    groupResolutionId: number;
  },
  change: GroupChange,
): 'stale' | 'echo' | 'move' {
  if (change.sequence <= issue.groupSequence) return 'stale';
  if (change.decidedBy === 'lifecycle') return 'echo';
  const implied = impliedGroupStatus(issue.status, issue.closeReason);
  const sameResolution =
    (change.resolutionId ?? issue.groupResolutionId) === issue.groupResolutionId;
  return implied === change.status && sameResolution ? 'echo' : 'move';
}

/** Grouping's status_change_noop: lifecycle's conditional change `changeId` was not applied. */
export interface GroupNoop {
  status: GroupStatus;
  sequence: number;
  changeId?: string;
}

/**
 * What a status_change_noop does to an issue: `superseded` (lifecycle asked grouping again since:
 * that request's answer settles it), `stale` (the group moved since: that change's status_changed
 * settles it), `agrees` (the group holds what the issue implies) or `move` (the issue follows the
 * group, as for an upstream change: `statusFromGroup`, and a claim ends).
 */
export function groupNoopEffect(
  issue: {
    status: IssueStatus;
    closeReason: CloseReason | null;
    groupSequence: number;
    groupRequestId: string | null;
  },
  noop: GroupNoop,
): 'superseded' | 'stale' | 'agrees' | 'move' {
  if (noop.changeId === undefined || noop.changeId !== issue.groupRequestId) return 'superseded';
  if (noop.sequence < issue.groupSequence) return 'stale';
  return impliedGroupStatus(issue.status, issue.closeReason) === noop.status ? 'agrees' : 'move';
}

/** What is wrong with a resolution, if anything: in_release names its release, in_commit its commits. */
export function resolutionProblem(resolution: Resolution): string | undefined {
  if (resolution.type === 'in_release' && !resolution.release)
    return 'resolution in_release needs a release';
  if (resolution.type === 'in_commit' && !resolution.commit_shas?.length)
    return 'resolution in_commit needs commit_shas';
  return undefined;
}
