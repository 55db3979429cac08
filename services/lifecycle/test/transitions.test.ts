import { describe, expect, it } from 'vitest';
import {
  allowedMoves,
  claimCheck,
  DEFAULT_SLA_MS,
  groupChangeEffect,
  groupNoopEffect,
  holderCheck,
  impliedGroupStatus,
  ISSUE_STATUSES,
  leaseSecondsValid,
  moveCheck,
  severityOfLevel,
  slaDueAt,
  statusChangeFor,
  statusFromGroup,
  TRANSITIONS,
  versionCheck,
  type Asker,
  type IssueState,
  type IssueStatus,
} from '../src/transitions.js';

const now = Date.parse('2026-11-30T12:00:00Z');
const token = 'a'.repeat(64);
const other = 'b'.repeat(64);
const issue = (
  status: IssueStatus,
  claim?: { by: string; sha: string; expires: number },
): IssueState => ({
  status,
  version: 3,
  claimedBy: claim?.by ?? null,
  claimTokenSha256: claim?.sha ?? null,
  claimExpiresAt: claim?.expires ?? null,
});
const agent = (sha: string | null = null, admin = false): Asker => ({
  actor: 'agent-1',
  admin,
  system: false,
  claimTokenSha256: sha,
});
const system: Asker = { actor: 'lifecycle-intake', admin: false, system: true };
const held = { by: 'agent-1', sha: token, expires: now + 60_000 };

describe('the transition table (issue 16)', () => {
  // the table as the issue writes it; ¹ needs the claim, ² system only
  const table: Record<IssueStatus, string[]> = {
    new: ['triaged', 'in_progress¹', 'resolved', 'closed'],
    triaged: ['in_progress¹', 'resolved', 'closed'],
    in_progress: ['awaiting_verification¹', 'resolved¹', 'triaged¹'],
    awaiting_verification: ['resolved', 'in_progress¹', 'regressed²'],
    resolved: ['closed', 'triaged', 'regressed²'],
    closed: ['triaged', 'regressed²'],
    regressed: ['triaged', 'in_progress¹', 'resolved', 'closed'],
  };

  it('is exactly the issue’s table', () => {
    for (const from of ISSUE_STATUSES)
      expect(
        TRANSITIONS[from].map((m) => `${m.to}${m.needsClaim ? '¹' : ''}${m.systemOnly ? '²' : ''}`),
        from,
      ).toEqual(table[from]);
  });

  it('refuses every move the table lacks, the same status included, naming the allowed moves', () => {
    for (const from of ISSUE_STATUSES)
      for (const to of ISSUE_STATUSES) {
        if (TRANSITIONS[from].some((m) => m.to === to)) continue;
        const check = moveCheck(issue(from), to, agent(null, true), now);
        expect(check, `${from} → ${to}`).toMatchObject({ ok: false, reason: 'invalid_transition' });
        if (!check.ok)
          expect(check.allowed).toEqual(allowedMoves(issue(from), agent(null, true), now));
      }
    const refused = moveCheck(issue('new'), 'awaiting_verification', agent(), now);
    expect(refused).toEqual({
      ok: false,
      reason: 'invalid_transition',
      detail: 'new → awaiting_verification is not allowed',
      allowed: ['triaged', 'resolved', 'closed'],
    });
  });

  it('¹ moves need the live claim: without it invalid, with another’s a conflict, with a lapsed one lease_expired', () => {
    expect(moveCheck(issue('triaged'), 'in_progress', agent(), now)).toMatchObject({
      ok: false,
      reason: 'invalid_transition',
    });
    expect(moveCheck(issue('triaged', held), 'in_progress', agent(token), now)).toEqual({
      ok: true,
    });
    expect(moveCheck(issue('triaged', held), 'in_progress', agent(other), now)).toMatchObject({
      ok: false,
      reason: 'claim_conflict',
      detail: 'claimed by agent-1',
      allowed: [],
    });
    const lapsed = { ...held, expires: now };
    expect(
      moveCheck(issue('in_progress', lapsed), 'awaiting_verification', agent(token), now),
    ).toMatchObject({
      ok: false,
      reason: 'lease_expired',
    });
  });

  it('while claimed only the holder or an admin moves it; an admin still needs the claim for ¹ moves', () => {
    expect(moveCheck(issue('triaged', held), 'closed', agent(other), now)).toMatchObject({
      reason: 'claim_conflict',
    });
    expect(moveCheck(issue('triaged', held), 'closed', agent(other, true), now)).toEqual({
      ok: true,
    });
    expect(moveCheck(issue('triaged', held), 'in_progress', agent(other, true), now)).toMatchObject(
      {
        reason: 'claim_conflict',
      },
    );
    expect(moveCheck(issue('triaged', held), 'closed', agent(token), now)).toEqual({ ok: true });
  });

  it('² regressed is the system’s only; reopening a closed issue takes admin', () => {
    expect(moveCheck(issue('resolved'), 'regressed', agent(null, true), now)).toMatchObject({
      reason: 'invalid_transition',
      detail: 'resolved → regressed is not allowed (system only)',
      allowed: ['closed', 'triaged'],
    });
    expect(moveCheck(issue('resolved'), 'regressed', system, now)).toEqual({ ok: true });
    expect(moveCheck(issue('closed'), 'triaged', agent(), now)).toMatchObject({
      reason: 'invalid_transition',
      allowed: [],
    });
    expect(moveCheck(issue('closed'), 'triaged', agent(null, true), now)).toEqual({ ok: true });
    expect(moveCheck(issue('resolved'), 'triaged', agent(), now)).toEqual({ ok: true });
  });
});

describe('claims are leases', () => {
  it('claimable in new, triaged, regressed, awaiting_verification with no live lease', () => {
    for (const status of ISSUE_STATUSES)
      expect(claimCheck(issue(status), agent(token), now).ok, status).toBe(
        ['new', 'triaged', 'regressed', 'awaiting_verification'].includes(status),
      );
    expect(claimCheck(issue('triaged', held), agent(other), now)).toMatchObject({
      ok: false,
      reason: 'claim_conflict',
      detail: 'claimed by agent-1',
    });
    // a lease is gone at its expiry
    expect(claimCheck(issue('triaged', { ...held, expires: now }), agent(other), now)).toEqual({
      ok: true,
    });
    expect(claimCheck(issue('triaged', { ...held, expires: now + 1 }), agent(other), now).ok).toBe(
      false,
    );
  });

  it('renew and release: the holder by token; an expired lease is lease_expired; an admin may force a release', () => {
    expect(holderCheck(issue('in_progress', held), agent(token), now, { adminMay: false })).toEqual(
      { ok: true },
    );
    expect(
      holderCheck(issue('in_progress', held), agent(other), now, { adminMay: false }),
    ).toMatchObject({
      reason: 'claim_conflict',
    });
    expect(
      holderCheck(issue('in_progress', held), agent(other, true), now, { adminMay: true }),
    ).toEqual({
      ok: true,
    });
    expect(
      holderCheck(issue('in_progress', held), agent(other, true), now, { adminMay: false }),
    ).toMatchObject({
      reason: 'claim_conflict',
    });
    expect(
      holderCheck(issue('in_progress', { ...held, expires: now - 1 }), agent(token), now, {
        adminMay: false,
      }),
    ).toMatchObject({ reason: 'lease_expired' });
    expect(holderCheck(issue('triaged'), agent(token), now, { adminMay: true })).toMatchObject({
      reason: 'invalid_transition',
      detail: 'the issue is not claimed',
    });
  });

  it('lease bounds: 1 to 3,600 seconds', () => {
    expect([0, 1, 300, 3600, 3601, 1.5].map(leaseSecondsValid)).toEqual([
      false,
      true,
      true,
      true,
      false,
      false,
    ]);
  });
});

describe('versions', () => {
  it('expected_version ≠ current is a version_conflict; absent matches', () => {
    expect(versionCheck(issue('new'), undefined, agent(), now)).toEqual({ ok: true });
    expect(versionCheck(issue('new'), 3, agent(), now)).toEqual({ ok: true });
    expect(versionCheck(issue('new'), 2, agent(), now)).toMatchObject({
      ok: false,
      reason: 'version_conflict',
      detail: 'expected version 2, the issue is at 3',
    });
  });
});

describe('issue state ↔ group status', () => {
  it('implies the group status of the issue’s table', () => {
    expect(
      ISSUE_STATUSES.map((s) => impliedGroupStatus(s, s === 'closed' ? 'fixed' : null)),
    ).toEqual([
      'unresolved',
      'unresolved',
      'unresolved',
      'resolved',
      'resolved',
      'resolved',
      'unresolved',
    ]);
    for (const reason of ['ignored', 'duplicate', 'wont_fix'] as const)
      expect(impliedGroupStatus('closed', reason)).toBe('ignored');
  });

  const state = (
    status: IssueStatus,
    closeReason: 'fixed' | 'ignored' | 'duplicate' | null = null,
    resolution = null,
  ) => ({
    status,
    closeReason,
    resolution,
  });

  it('sends unresolve only when coming from a resolved or closed state, expecting what it left', () => {
    expect(statusChangeFor(state('resolved'), state('triaged'))).toEqual({
      action: 'unresolve',
      expect: 'resolved',
    });
    expect(statusChangeFor(state('closed', 'duplicate'), state('triaged'))).toEqual({
      action: 'unresolve',
      expect: 'ignored',
    });
    expect(statusChangeFor(state('new'), state('triaged'))).toBeNull();
    expect(statusChangeFor(state('triaged'), state('in_progress'))).toBeNull();
  });

  it('resolves with the resolution (default in_next_release) unless already resolved by it; closed fixed sends nothing more', () => {
    expect(statusChangeFor(state('in_progress'), state('awaiting_verification'))).toEqual({
      action: 'resolve',
      expect: 'unresolved',
      resolution: { type: 'in_next_release' },
    });
    const inCommit = { type: 'in_commit' as const, commit_shas: ['abcdef1'] };
    expect(
      statusChangeFor(
        { status: 'awaiting_verification', closeReason: null, resolution: inCommit },
        { status: 'resolved', closeReason: null, resolution: { ...inCommit } },
      ),
    ).toBeNull();
    expect(
      statusChangeFor(
        { status: 'awaiting_verification', closeReason: null, resolution: null },
        { status: 'resolved', closeReason: null, resolution: inCommit },
      ),
    ).toEqual({ action: 'resolve', expect: 'resolved', resolution: inCommit });
    expect(statusChangeFor(state('resolved'), state('closed', 'fixed'))).toBeNull();
  });

  it('ignores for closed ignored, duplicate or wont_fix', () => {
    expect(statusChangeFor(state('triaged'), state('closed', 'duplicate'))).toEqual({
      action: 'ignore',
      expect: 'unresolved',
    });
    expect(statusChangeFor(state('resolved'), state('closed', 'ignored'))).toEqual({
      action: 'ignore',
      expect: 'resolved',
    });
  });

  it('grouping’s status_changed: older ignored, an echo kept, anything else moves the issue', () => {
    const at = {
      status: 'in_progress' as const,
      closeReason: null,
      groupSequence: 4,
      groupResolutionId: 1,
    };
    expect(groupChangeEffect(at, { status: 'resolved', sequence: 4 })).toBe('stale');
    expect(groupChangeEffect(at, { status: 'unresolved', sequence: 5, resolutionId: 1 })).toBe(
      'echo',
    );
    expect(
      groupChangeEffect(at, {
        status: 'resolved',
        sequence: 5,
        resolutionId: 2,
        decidedBy: 'lifecycle',
      }),
    ).toBe('echo');
    expect(groupChangeEffect(at, { status: 'resolved', sequence: 5, resolutionId: 2 })).toBe(
      'move',
    );
    expect(
      groupChangeEffect(
        { ...at, status: 'resolved' },
        { status: 'resolved', sequence: 5, resolutionId: 2 },
      ),
    ).toBe('move');
    expect(statusFromGroup('resolved', 'upstream')).toEqual({
      status: 'resolved',
      closeReason: null,
    });
    expect(statusFromGroup('ignored', undefined)).toEqual({
      status: 'closed',
      closeReason: 'ignored',
    });
    expect(statusFromGroup('unresolved', 'upstream')).toEqual({
      status: 'triaged',
      closeReason: null,
    });
    expect(statusFromGroup('unresolved', 'regression')).toEqual({
      status: 'regressed',
      closeReason: null,
    });
  });
});

describe('grouping’s status_change_noop', () => {
  it('only the last change asked for counts; a noop older than the group’s last change is stale; else the issue follows the group unless it agrees', () => {
    const issue = {
      status: 'triaged' as const,
      closeReason: null,
      groupSequence: 3,
      groupRequestId: 'c2',
    };
    expect(groupNoopEffect(issue, { status: 'resolved', sequence: 3, changeId: 'c1' })).toBe(
      'superseded',
    );
    expect(groupNoopEffect(issue, { status: 'resolved', sequence: 3 })).toBe('superseded');
    expect(
      groupNoopEffect({ ...issue, groupRequestId: null }, { status: 'resolved', sequence: 3 }),
    ).toBe('superseded');
    expect(groupNoopEffect(issue, { status: 'resolved', sequence: 2, changeId: 'c2' })).toBe(
      'stale',
    );
    // the sequence a noop carries is the group's current one: equal to the last applied is current
    expect(groupNoopEffect(issue, { status: 'resolved', sequence: 3, changeId: 'c2' })).toBe(
      'move',
    );
    expect(groupNoopEffect(issue, { status: 'unresolved', sequence: 3, changeId: 'c2' })).toBe(
      'agrees',
    );
    expect(
      groupNoopEffect(
        { ...issue, status: 'closed', closeReason: 'wont_fix' },
        { status: 'ignored', sequence: 4, changeId: 'c2' },
      ),
    ).toBe('agrees');
  });
});

describe('severity and SLA', () => {
  it('severity from level: fatal critical, error high, warning medium, else low', () => {
    expect(['fatal', 'error', 'warning', 'info', 'debug', undefined].map(severityOfLevel)).toEqual([
      'critical',
      'high',
      'medium',
      'low',
      'low',
      'low',
    ]);
  });

  it('SLA due = since + the severity’s SLA (critical 4h … low 7d)', () => {
    expect(slaDueAt('critical', now, DEFAULT_SLA_MS) - now).toBe(4 * 3_600_000);
    expect(slaDueAt('low', now, DEFAULT_SLA_MS) - now).toBe(7 * 86_400_000);
  });
});
