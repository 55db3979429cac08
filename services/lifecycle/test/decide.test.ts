import { randomUUID } from 'node:crypto';
import { HEADER, type RunningConsumer } from '@shoal/kafka-runtime';
import { kafka, waitFor, type IsolatedDatabase, type IsolatedTopics } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { decideRetention } from '../src/decide/retention.js';
import {
  agent,
  at,
  decideTestKit,
  history,
  issue,
  lifecycleEvents,
  open,
  outcomes,
  publish,
  run,
  sha256,
  statusChanges,
  system,
} from './decide-support.js';

const kit = decideTestKit();
let ns: IsolatedTopics;
let db: IsolatedDatabase;
const token = sha256('token-1');
const otherToken = sha256('token-2');

const group = `decide-${randomUUID()}`;
const env = { SHOAL_HOLD_DEADLINE_SECONDS_ISSUE: '1' };
let live: RunningConsumer;

beforeAll(async () => {
  ({ ns, db } = await kit.fresh());
  live = await kit.start(ns, db, env, group);
}, 120_000);

const failures = async (reason: string) =>
  (
    await db.pool.query<{ message_id: string; entity: string | null }>(
      'SELECT message_id, entity FROM message_failures WHERE reason = $1',
      [reason],
    )
  ).rows;

const rejections = async () =>
  (
    await db.pool.query<{ message_id: string; reason: string }>(
      'SELECT message_id, reason FROM message_rejections',
    )
  ).rows;

describe('an agent works an issue', () => {
  it('open, claim, renew, work, resolve in a commit: versions 1…N, history, events with the whole issue', async () => {
    const id = 101;
    const commands = [
      open(id),
      agent({
        command: 'claim',
        issue_id: id,
        claim_token: token,
        lease_seconds: 300,
        expected_version: 1,
        issued_at: at(10),
      }),
      agent({
        command: 'renew',
        issue_id: id,
        claim_token: token,
        lease_seconds: 600,
        issued_at: at(20),
      }),
      agent({
        command: 'transition',
        issue_id: id,
        to_status: 'in_progress',
        claim_token: token,
        issued_at: at(30),
      }),
      agent({ command: 'add_note', issue_id: id, note: 'looking at the cart', issued_at: at(40) }),
      agent({
        command: 'attach_event',
        issue_id: id,
        run_event: { run_id: 'run-1', phase: 'succeeded', summary: 'tests pass' },
        issued_at: at(50),
      }),
      agent({
        command: 'transition',
        issue_id: id,
        to_status: 'awaiting_verification',
        claim_token: token,
        issued_at: at(60),
      }),
      agent({
        command: 'resolve',
        issue_id: id,
        resolution: {
          type: 'in_commit',
          commit_shas: ['9fceb02d0ae598e95dc970b74767f19372d61af8'],
          repository: 'acme/shop',
        },
        release_sha: '9fceb02d0ae598e95dc970b74767f19372d61af8',
        issued_at: at(70),
      }),
    ];
    const decided = await run(ns, db, ...commands);
    expect(decided.map((o) => [o.outcome, o.version])).toEqual(
      [1, 2, 3, 4, 5, 6, 7, 8].map((v) => ['applied', v]),
    );
    const row = (await issue(db, id))!;
    expect(row).toMatchObject({
      status: 'resolved',
      version: 8,
      severity: 'high',
      claimed_by: null,
      claim_token_sha256: null,
      claim_generation: 1,
      sla_due_at: new Date(Date.parse(at(0)) + 24 * 3_600_000).toISOString(),
      resolution: { type: 'in_commit', repository: 'acme/shop' },
    });
    const steps = await history(db, id);
    expect(steps.map((h) => [h.version, h.event_type, h.from_status, h.to_status])).toEqual([
      [1, 'created', null, 'new'],
      [2, 'claimed', 'new', 'new'],
      [3, 'claim_renewed', 'new', 'new'],
      [4, 'transitioned', 'new', 'in_progress'],
      [5, 'note_added', 'in_progress', 'in_progress'],
      [6, 'event_attached', 'in_progress', 'in_progress'],
      [7, 'transitioned', 'in_progress', 'awaiting_verification'],
      [8, 'resolved', 'awaiting_verification', 'resolved'],
    ]);
    // time in the previous state, from the log's times: in_progress from 30 s to 60 s
    expect(steps[6]!.in_previous_state).toBe('00:00:30');

    const events = await lifecycleEvents(ns, db, id);
    expect(events.map((e) => [e.value.version, e.value.event_type, e.key])).toEqual(
      steps.map((h) => [h.version, h.event_type, String(id)]),
    );
    expect(events.map((e) => e.value.command_id)).toEqual(commands.map((c) => c.command_id));
    expect(new Set(events.map((e) => e.value.event_id)).size).toBe(8);
    const renewed = events[2]!.value;
    expect(renewed.claim_expires_at).toBe(new Date(Date.parse(at(20)) + 600_000).toISOString());
    expect(events[5]!.value.run_event).toEqual({
      run_id: 'run-1',
      phase: 'succeeded',
      summary: 'tests pass',
    });
    const last = events[7]!.value;
    expect(last).toMatchObject({
      status: 'resolved',
      previous_status: 'awaiting_verification',
      commit_shas: ['9fceb02d0ae598e95dc970b74767f19372d61af8'],
      release_sha: '9fceb02d0ae598e95dc970b74767f19372d61af8',
      issue: {
        issue_id: id,
        group_id: id,
        status: 'resolved',
        version: 8,
        times_seen: 1,
        claimed_by: null,
      },
    });

    // grouping is asked to resolve when the issue enters awaiting_verification (in_next_release), then
    // again for the commit; both conditional, both naming the group, keyed like its other status changes
    const changes = await statusChanges(ns, db, id);
    expect(changes.map((c) => [c.key, c.value.new_status, c.value.shoal])).toEqual([
      [
        '1:fp-101',
        1,
        expect.objectContaining({
          group_id: id,
          expect: { status: 0 },
          resolution: { type: 'in_next_release' },
          decided_by: 'lifecycle',
        }),
      ],
      [
        '1:fp-101',
        1,
        expect.objectContaining({
          expect: { status: 1 },
          resolution: { type: 'in_commit', commit: '9fceb02d0ae598e95dc970b74767f19372d61af8' },
        }),
      ],
    ]);
  });
});

describe('refusals are outcomes', () => {
  it('an illegal move is invalid_transition naming the allowed moves; nothing is published for it', async () => {
    const id = 201;
    const bad = agent({ command: 'transition', issue_id: id, to_status: 'awaiting_verification' });
    const same = agent({ command: 'transition', issue_id: id, to_status: 'new' });
    const [, refused, sameRefused] = await run(ns, db, open(id), bad, same);
    expect(refused).toMatchObject({
      outcome: 'rejected',
      reason: 'invalid_transition',
      allowed_transitions: ['triaged', 'resolved', 'closed'],
      version: 1,
      issue: { status: 'new', version: 1 },
    });
    expect(sameRefused).toMatchObject({ outcome: 'rejected', reason: 'invalid_transition' });
    expect(await rejections()).toEqual(
      expect.arrayContaining([
        { message_id: bad.command_id, reason: 'invalid_transition' },
        { message_id: same.command_id, reason: 'invalid_transition' },
      ]),
    );
    expect((await lifecycleEvents(ns, db, id)).map((e) => e.value.version)).toEqual([1]);
    // a rejection does not park the key: a later command of the issue applies
    const [triaged] = await run(
      ns,
      db,
      agent({ command: 'transition', issue_id: id, to_status: 'triaged' }),
    );
    expect(triaged).toMatchObject({ outcome: 'applied', version: 2 });
  });

  it('racing claims: log order settles, the loser is claim_conflict naming the holder; only the holder moves it', async () => {
    const id = 202;
    const first = agent({ command: 'claim', issue_id: id, claim_token: token, actor: 'agent-a' });
    const second = agent({
      command: 'claim',
      issue_id: id,
      claim_token: otherToken,
      actor: 'agent-b',
    });
    const intruder = agent({
      command: 'transition',
      issue_id: id,
      to_status: 'closed',
      claim_token: otherToken,
      actor: 'agent-b',
    });
    const admin = agent({
      command: 'transition',
      issue_id: id,
      to_status: 'triaged',
      actor: 'ops',
      admin: true,
    });
    const [, won, lost, refused, forced] = await run(
      ns,
      db,
      open(id),
      first,
      second,
      intruder,
      admin,
    );
    expect(won).toMatchObject({ outcome: 'applied', issue: { claimed_by: 'agent-a' } });
    expect(lost).toMatchObject({
      outcome: 'rejected',
      reason: 'claim_conflict',
      detail: 'claimed by agent-a',
      issue: { claimed_by: 'agent-a' },
    });
    expect(refused).toMatchObject({ reason: 'claim_conflict', allowed_transitions: [] });
    // an admin moves a claimed issue; the claim stays (triaged does not end it)
    expect(forced).toMatchObject({
      outcome: 'applied',
      issue: { status: 'triaged', claimed_by: 'agent-a' },
    });
    expect((await issue(db, id))!.claim_token_sha256).toBe(token);
  });

  it('a lapsed lease is lease_expired for its holder, and claimable by another', async () => {
    const id = 203;
    const claim = agent({
      command: 'claim',
      issue_id: id,
      claim_token: token,
      lease_seconds: 2,
      issued_at: at(10),
    });
    const work = agent({
      command: 'transition',
      issue_id: id,
      to_status: 'in_progress',
      claim_token: token,
      issued_at: at(11),
    });
    const lateMove = agent({
      command: 'transition',
      issue_id: id,
      to_status: 'awaiting_verification',
      claim_token: token,
      issued_at: at(12),
    });
    const lateRenew = agent({
      command: 'renew',
      issue_id: id,
      claim_token: token,
      issued_at: at(12),
    });
    const [, , , moved, renewed] = await run(ns, db, open(id), claim, work, lateMove, lateRenew);
    expect(moved).toMatchObject({ outcome: 'rejected', reason: 'lease_expired' });
    expect(renewed).toMatchObject({ outcome: 'rejected', reason: 'lease_expired' });
    // a renew issued before the expiry but decided after a later command is judged at the later time
    const lateByClock = agent({
      command: 'renew',
      issue_id: id,
      claim_token: token,
      issued_at: at(11),
    });
    expect((await run(ns, db, lateByClock))[0]).toMatchObject({
      reason: 'lease_expired',
      decided_at: at(12),
    });
  });

  it('expected_version ≠ current is version_conflict', async () => {
    const id = 204;
    const [, stale, current] = await run(
      ns,
      db,
      open(id),
      agent({ command: 'transition', issue_id: id, to_status: 'triaged', expected_version: 7 }),
      agent({ command: 'transition', issue_id: id, to_status: 'triaged', expected_version: 1 }),
    );
    expect(stale).toMatchObject({
      outcome: 'rejected',
      reason: 'version_conflict',
      detail: 'expected version 7, the issue is at 1',
      version: 1,
    });
    expect(current).toMatchObject({ outcome: 'applied', version: 2 });
  });

  it('tokens as stored: a claim without a SHA-256 is invalid_command; a system command from an agent too', async () => {
    const id = 205;
    const [, raw, spoof] = await run(
      ns,
      db,
      open(id),
      agent({ command: 'claim', issue_id: id, claim_token: 'raw-token' }),
      agent({ command: 'delete', issue_id: id }),
    );
    expect(raw).toMatchObject({ outcome: 'rejected', reason: 'invalid_command' });
    expect(spoof).toMatchObject({
      outcome: 'rejected',
      reason: 'invalid_command',
      detail: 'delete is a system command',
    });
    expect((await issue(db, id))!.deleted).toBe(false);
  });

  it('a command already decided is not judged again (a re-send gets its first outcome)', async () => {
    const id = 206;
    const note = agent({ command: 'add_note', issue_id: id, note: 'once' });
    await run(ns, db, open(id), note);
    // sent again under another message id (as after the ledger's re-send window): same command id
    await publish(ns, [note], () => randomUUID());
    const [after] = await run(ns, db, agent({ command: 'add_note', issue_id: id, note: 'after' }));
    expect(after).toMatchObject({ outcome: 'applied', version: 3 });
    expect((await outcomes(db, [note]))[0]).toMatchObject({ outcome: 'applied', version: 2 });
    expect((await history(db, id)).map((h) => h.details.note)).toEqual([
      undefined,
      'once',
      'after',
    ]);
  });
});

describe('deleted, hidden and unknown issues', () => {
  it('a deleted issue is a tombstone: deleted event, claim ended; agent commands stale_reference(issue), system ones ignored', async () => {
    const id = 301;
    const [, , deleted] = await run(
      ns,
      db,
      open(id),
      agent({ command: 'claim', issue_id: id, claim_token: token }),
      system({ command: 'delete', issue_id: id, issued_at: at(100) }),
    );
    expect(deleted).toMatchObject({ outcome: 'applied', version: 3 });
    expect(await issue(db, id)).toMatchObject({ deleted: true, claimed_by: null, version: 3 });
    const late = agent({ command: 'add_note', issue_id: id, note: 'too late' });
    const observe = system({ command: 'observe', issue_id: id, group: { times_seen: 9 } });
    // the observe first: the dead-lettered command parks the issue's later ones (ordered topic)
    await publish(ns, [observe, late]);
    await waitFor('the stale reference', async () =>
      (await failures('stale_reference')).some(
        (f) => f.message_id === late.command_id && f.entity === 'issue',
      ),
    );
    expect((await outcomes(db, [observe]))[0]).toMatchObject({
      outcome: 'ignored',
      reason: 'stale_reference',
    });
    expect((await lifecycleEvents(ns, db, id)).map((e) => e.value.event_type)).toEqual([
      'created',
      'claimed',
      'deleted',
    ]);
    expect((await history(db, id)).length).toBe(3);
  });

  it('an agent command for an issue never opened is held, then unknown_reference', async () => {
    const never = agent({ command: 'add_note', issue_id: 399, note: 'who?' });
    await publish(ns, [never]);
    await waitFor(
      'unknown_reference',
      async () =>
        (await failures('unknown_reference')).some((f) => f.message_id === never.command_id),
      30_000,
    );
    expect(await issue(db, 399)).toBeUndefined();
  });

  it('a hidden issue refuses agents until its project is restored', async () => {
    const id = 302;
    const note = agent({ command: 'add_note', issue_id: id, note: 'hello', issued_at: at(20) });
    const [, hidden, refused, shown, again] = await run(
      ns,
      db,
      open(id),
      system({ command: 'hide', issue_id: id, project_id: 1, issued_at: at(10) }),
      note,
      system({ command: 'unhide', issue_id: id, project_id: 1, issued_at: at(30) }),
      agent({ command: 'add_note', issue_id: id, note: 'hello again', issued_at: at(40) }),
    );
    expect(hidden).toMatchObject({ outcome: 'applied', version: 2 });
    expect(refused).toMatchObject({ outcome: 'rejected', reason: 'hidden' });
    expect(shown).toMatchObject({ outcome: 'applied', version: 3 });
    expect(again).toMatchObject({ outcome: 'applied', version: 4 });
  });

  it('system commands that outrun their open wait for it and are decided right after it, in order', async () => {
    const id = 303;
    const link = system({
      command: 'set_duplicate',
      issue_id: id,
      duplicate_of: 101,
      incident_id: 7,
      issued_at: at(5),
    });
    const seen = system({
      command: 'observe',
      issue_id: id,
      group: { times_seen: 4, last_seen: at(4) },
      issued_at: at(6),
    });
    await publish(ns, [link, seen]);
    const opening = open(id, { issued_at: at(1) });
    await publish(ns, [opening]);
    const [opened, linked, observed] = await outcomes(db, [opening, link, seen]);
    expect([opened!, linked!, observed!].map((o) => [o.outcome, o.version])).toEqual([
      ['applied', 1],
      ['applied', 2],
      ['applied', 2],
    ]);
    expect(await issue(db, id)).toMatchObject({
      duplicate_of: 101,
      canonical_incident_id: 7,
      times_seen: 4,
    });
    const events = await lifecycleEvents(ns, db, id);
    expect(events.map((e) => [e.value.event_type, e.value.command_id])).toEqual([
      ['created', opened!.command_id],
      ['duplicate_changed', link.command_id],
    ]);
    expect(
      (await db.pool.query('SELECT 1 FROM early_commands WHERE issue_id = $1', [id])).rowCount,
    ).toBe(0);
  });
});

describe('telemetry and incidents', () => {
  it('observe updates the read model only; the next event’s snapshot shows it', async () => {
    const id = 401;
    const [, observed] = await run(
      ns,
      db,
      open(id),
      system({
        command: 'observe',
        issue_id: id,
        group: { times_seen: 42, times_seen_delta: 41, level: 'fatal' },
      }),
    );
    expect(observed).toMatchObject({ outcome: 'applied', version: 1 });
    // the level moved severity, and the SLA with it (from the open)
    expect(await issue(db, id)).toMatchObject({
      version: 1,
      times_seen: 42,
      severity: 'critical',
      sla_due_at: new Date(Date.parse(at(0)) + 4 * 3_600_000).toISOString(),
    });
    await run(ns, db, agent({ command: 'add_note', issue_id: id, note: 'n' }));
    const events = await lifecycleEvents(ns, db, id);
    expect(events.map((e) => [e.value.version, e.value.issue?.times_seen])).toEqual([
      [1, 1],
      [2, 42],
    ]);
    // severity follows the level only until someone sets it
    await run(
      ns,
      db,
      agent({ command: 'update', issue_id: id, severity: 'low', category: 'checkout' }),
      system({ command: 'observe', issue_id: id, group: { times_seen: 43, level: 'fatal' } }),
    );
    expect(await issue(db, id)).toMatchObject({ version: 3, severity: 'low', times_seen: 43 });
    expect((await history(db, id)).at(-1)!.details).toEqual({
      changed: {
        severity: { from: 'critical', to: 'low' },
        category: { from: null, to: 'checkout' },
        sla_due_at: {
          from: new Date(Date.parse(at(0)) + 4 * 3_600_000).toISOString(),
          to: new Date(Date.parse(at(0)) + 7 * 86_400_000).toISOString(),
        },
      },
    });
  });

  it('incidents: linked → duplicate_of the canonical issue (not a close), re-pointed, cleared', async () => {
    const id = 402;
    const [, linked, same, repointed, cleared, canonical] = await run(
      ns,
      db,
      open(id),
      system({ command: 'set_duplicate', issue_id: id, duplicate_of: 401, incident_id: 3 }),
      system({ command: 'set_duplicate', issue_id: id, duplicate_of: 401, incident_id: 3 }),
      system({ command: 'set_duplicate', issue_id: id, duplicate_of: 101, incident_id: 5 }),
      system({ command: 'set_duplicate', issue_id: id, duplicate_of: null, incident_id: null }),
      // the canonical group of its own incident is no one's duplicate
      system({ command: 'set_duplicate', issue_id: id, duplicate_of: id, incident_id: 9 }),
    );
    expect([linked!, same!, repointed!, cleared!, canonical!].map((o) => o.outcome)).toEqual([
      'applied',
      'ignored',
      'applied',
      'applied',
      'applied',
    ]);
    expect(await issue(db, id)).toMatchObject({
      status: 'new',
      duplicate_of: null,
      canonical_incident_id: 9,
    });
  });

  it('mark_duplicate closes with close_reason duplicate and asks grouping to ignore', async () => {
    const id = 403;
    const [, marked] = await run(
      ns,
      db,
      open(id),
      agent({ command: 'mark_duplicate', issue_id: id, duplicate_of: 401 }),
    );
    expect(marked).toMatchObject({ outcome: 'applied', issue: { status: 'closed' } });
    expect(await issue(db, id)).toMatchObject({ close_reason: 'duplicate', duplicate_of: 401 });
    expect(
      (await statusChanges(ns, db, id)).map((c) => [c.value.new_status, c.value.shoal?.expect]),
    ).toEqual([[2, { status: 0 }]]);
  });
});

describe('grouping’s status_changed', () => {
  const sync = (
    id: number,
    sequence: number,
    status: 'unresolved' | 'resolved' | 'ignored',
    extra = {},
  ) =>
    system({
      command: 'sync_status',
      issue_id: id,
      group_status: { status, sequence, resolution_id: 1, ...extra },
      issued_at: at(100 + sequence),
    });

  it('an echo keeps the claim; an upstream resolve moves the issue and ends it; an older one is ignored', async () => {
    const id = 501;
    const [, , echo, resolved, older] = await run(
      ns,
      db,
      open(id),
      agent({ command: 'claim', issue_id: id, claim_token: token, issued_at: at(50) }),
      system({
        command: 'sync_status',
        issue_id: id,
        group_status: { status: 'unresolved', sequence: 1, resolution_id: 0 },
        issued_at: at(60),
      }),
      {
        ...sync(id, 2, 'resolved', { decided_by: 'upstream' }),
        resolution: { type: 'now' as const, resolution_id: 1 },
      },
      sync(id, 1, 'ignored'),
    );
    expect(echo).toMatchObject({
      outcome: 'ignored',
      reason: 'echo',
      issue: { claimed_by: 'agent-1' },
    });
    expect(resolved).toMatchObject({
      outcome: 'applied',
      version: 3,
      issue: { status: 'resolved', claimed_by: null },
    });
    expect(older).toMatchObject({ outcome: 'ignored', reason: 'stale_status' });
    expect(await issue(db, id)).toMatchObject({ group_status: 'resolved', group_sequence: 2 });
    // the issue followed grouping: nothing is sent back
    expect(await statusChanges(ns, db, id)).toEqual([]);
  });

  it('regressed when regression decided it: the SLA restarts; an agent’s reopen of it asks grouping to unresolve', async () => {
    const id = 502;
    const [, , , regressed] = await run(
      ns,
      db,
      open(id),
      agent({
        command: 'resolve',
        issue_id: id,
        resolution: { type: 'in_release', release: 'shop@1.0' },
        issued_at: at(10),
      }),
      sync(id, 1, 'resolved', { decided_by: 'lifecycle' }),
      sync(id, 2, 'unresolved', { decided_by: 'regression' }),
    );
    expect(regressed).toMatchObject({ outcome: 'applied', issue: { status: 'regressed' } });
    const row = (await issue(db, id))!;
    expect(row.sla_due_at).toBe(new Date(Date.parse(at(102)) + 24 * 3_600_000).toISOString());
    const events = await lifecycleEvents(ns, db, id);
    expect(events.map((e) => e.value.event_type)).toEqual(['created', 'resolved', 'regressed']);
    const [, closed] = await run(
      ns,
      db,
      agent({ command: 'transition', issue_id: id, to_status: 'resolved', issued_at: at(200) }),
      agent({
        command: 'transition',
        issue_id: id,
        to_status: 'closed',
        close_reason: 'wont_fix',
        issued_at: at(201),
      }),
    );
    expect(closed).toMatchObject({ outcome: 'applied' });
    const reopen = agent({ command: 'reopen', issue_id: id, issued_at: at(202) });
    expect((await run(ns, db, reopen))[0]).toMatchObject({
      outcome: 'rejected',
      allowed_transitions: [],
    });
    const adminReopen = agent({ command: 'reopen', issue_id: id, admin: true, issued_at: at(203) });
    expect((await run(ns, db, adminReopen))[0]).toMatchObject({
      outcome: 'applied',
      issue: { status: 'triaged' },
    });
    const sent = (await statusChanges(ns, db, id)).map((c) => [
      c.value.new_status,
      c.value.shoal?.expect,
    ]);
    expect(sent).toEqual([
      [1, { status: 0 }], // resolve in release
      [1, { status: 0 }], // resolved again from regressed
      [2, { status: 1 }], // closed wont_fix: ignore
      [0, { status: 2 }], // reopened: unresolve, expecting ignored
    ]);
  });
});

describe('grouping’s status_change_noop (intake: sync_status with noop)', () => {
  const noop = (id: number, changeId: string, status: 'unresolved' | 'resolved', seconds: number) =>
    system({
      command: 'sync_status',
      issue_id: id,
      group_status: {
        status,
        sequence: 1,
        resolution_id: 1,
        decided_by: 'lifecycle',
        change_id: changeId,
        noop: true,
      },
      issued_at: at(seconds),
    });

  it('the issue follows what the group holds when grouping refused the last change asked for; an earlier one’s noop or one that agrees changes nothing', async () => {
    const id = 651;
    await run(
      ns,
      db,
      open(id),
      agent({ command: 'resolve', issue_id: id, issued_at: at(10) }),
      system({
        command: 'sync_status',
        issue_id: id,
        group_status: {
          status: 'resolved',
          sequence: 1,
          resolution_id: 1,
          decided_by: 'lifecycle',
        },
        issued_at: at(11),
      }),
      agent({ command: 'reopen', issue_id: id, issued_at: at(20) }),
    );
    const [resolveChange, reopenChange] = (await statusChanges(ns, db, id)).map((c) => c.value.id);
    expect(reopenChange).toBeDefined();
    // the resolve's noop: lifecycle asked again since (the reopen), whose answer settles it
    const [superseded, followed, again] = await run(
      ns,
      db,
      noop(id, resolveChange!, 'resolved', 30),
      noop(id, reopenChange!, 'resolved', 31),
      noop(id, reopenChange!, 'resolved', 32),
    );
    expect(superseded).toMatchObject({ outcome: 'ignored', reason: 'superseded' });
    expect(followed).toMatchObject({
      outcome: 'applied',
      version: 4,
      issue: { status: 'resolved' },
    });
    // the same noop again (a re-sent group event under another id): the issue agrees now
    expect(again).toMatchObject({ outcome: 'ignored', reason: 'echo' });
    expect((await history(db, id)).at(-1)).toMatchObject({
      event_type: 'resolved',
      from_status: 'triaged',
      to_status: 'resolved',
      details: { group_status: 'resolved', reconciled: reopenChange },
    });
    expect((await lifecycleEvents(ns, db, id)).map((e) => e.value.event_type)).toEqual([
      'created',
      'resolved',
      'reopened',
      'resolved',
    ]);
    // the issue followed grouping: nothing more is sent back
    expect(await statusChanges(ns, db, id)).toHaveLength(2);
  });
});

describe('severity and the SLA', () => {
  const hours = (start: string, h: number) =>
    new Date(Date.parse(start) + h * 3_600_000).toISOString();
  const update = (id: number, seconds: number, fields: object) =>
    agent({ command: 'update', issue_id: id, issued_at: at(seconds), ...fields });

  it('a severity change moves the SLA due time from the open, or the last regression; an agent’s own due time stays', async () => {
    const id = 601;
    await run(ns, db, open(id), update(id, 30, { severity: 'critical' }));
    expect((await issue(db, id))!.sla_due_at).toBe(hours(at(0), 4));
    const changed = (await history(db, id)).at(-1)!.details.changed;
    expect(changed).toMatchObject({
      severity: { from: 'high', to: 'critical' },
      sla_due_at: { from: hours(at(0), 24), to: hours(at(0), 4) },
    });
    // set by an agent: a later severity change leaves it
    const own = hours(at(0), 100);
    await run(ns, db, update(id, 40, { sla_due_at: own }), update(id, 50, { severity: 'low' }));
    expect(await issue(db, id)).toMatchObject({ severity: 'low', sla_due_at: own });

    // a regression restarts the SLA (an agent's due time included); severity counts from it
    const regressed = 602;
    await run(
      ns,
      db,
      open(regressed),
      update(regressed, 5, { sla_due_at: own }),
      agent({ command: 'resolve', issue_id: regressed, issued_at: at(10) }),
      system({
        command: 'sync_status',
        issue_id: regressed,
        group_status: {
          status: 'resolved',
          sequence: 1,
          resolution_id: 1,
          decided_by: 'lifecycle',
        },
        issued_at: at(101),
      }),
      system({
        command: 'sync_status',
        issue_id: regressed,
        group_status: {
          status: 'unresolved',
          sequence: 2,
          resolution_id: 1,
          decided_by: 'regression',
        },
        issued_at: at(102),
      }),
      update(regressed, 150, { severity: 'medium' }),
    );
    expect(await issue(db, regressed)).toMatchObject({
      status: 'regressed',
      severity: 'medium',
      sla_due_at: hours(at(102), 72),
    });
  });
});

describe('failures park an issue, refusals do not', () => {
  it('an undecodable command is dead-lettered and parks its issue’s later commands; other issues flow', async () => {
    await run(ns, db, open(901), open(902));
    const producer = kafka().producer({ idempotent: true });
    await producer.connect();
    const broken = randomUUID();
    await producer.send({
      topic: ns.topics.lifecycleCommands,
      acks: -1,
      messages: [
        {
          key: '901',
          value: '{"command": "claim", not json',
          headers: { [HEADER.messageId]: broken },
        },
      ],
    });
    await producer.disconnect();
    const behind = agent({ command: 'add_note', issue_id: 901, note: 'parked' });
    const other = agent({ command: 'add_note', issue_id: 902, note: 'flows' });
    const [applied] = await run(ns, db, other);
    await publish(ns, [behind]);
    expect(applied).toMatchObject({ outcome: 'applied', version: 2 });
    await waitFor('the dead letter', async () =>
      (await failures('decode_error')).some((f) => f.message_id === broken),
    );
    await waitFor('the note parked', async () =>
      Boolean(
        (
          await db.pool.query('SELECT 1 FROM parked_messages WHERE message_id = $1', [
            behind.command_id,
          ])
        ).rowCount,
      ),
    );
    expect(await outcomes(db, [behind], 1000).catch(() => [])).toEqual([]);
  });

  it('rejections never count toward the dead-letter limits; failures do', async () => {
    const fresh = await kit.fresh();
    const consumer = await kit.start(fresh.ns, fresh.db, { SHOAL_DLQ_MAX_CONSECUTIVE: '2' });
    const refused = Array.from({ length: 6 }, () =>
      agent({ command: 'transition', issue_id: 950, to_status: 'awaiting_verification' }),
    );
    const decided = await run(fresh.ns, fresh.db, open(950), ...refused);
    expect(decided.slice(1).map((o) => o.reason)).toEqual(Array(6).fill('invalid_transition'));
    let stopped = false;
    void consumer.done.catch(() => (stopped = true));
    const [later] = await run(
      fresh.ns,
      fresh.db,
      agent({ command: 'add_note', issue_id: 950, note: 'still here' }),
    );
    expect(later).toMatchObject({ outcome: 'applied' });
    expect(stopped).toBe(false);
    // three undecodable commands in a row on one partition (issues of their own, so none is parked
    // behind another) cross the limit of two: the consumer stops itself
    const producer = kafka().producer({ idempotent: true });
    await producer.connect();
    await producer.send({
      topic: fresh.ns.topics.lifecycleCommands,
      acks: -1,
      messages: [951, 952, 953].map((id) => ({ key: String(id), value: 'not json', partition: 0 })),
    });
    await producer.disconnect();
    await waitFor('the consumer to stop at the limit', async () => stopped, 30_000);
  });
});

describe('the log is the source of truth', () => {
  /** What decide wrote: its tables and the events it emitted, in a comparable order. */
  const state = async (target: IsolatedDatabase) => {
    const all = async (sql: string) =>
      (await target.pool.query<{ row: unknown }>(sql)).rows.map((r) => r.row);
    return {
      issues: await all('SELECT to_jsonb(i) AS row FROM issues i ORDER BY id'),
      history: await all(
        'SELECT to_jsonb(h) AS row FROM issue_history h ORDER BY issue_id, version',
      ),
      commands: await all(
        'SELECT to_jsonb(c) AS row FROM lifecycle_commands c ORDER BY command_id',
      ),
      early: await all('SELECT to_jsonb(e) AS row FROM early_commands e ORDER BY command_id'),
      events: await all(
        `SELECT json_build_object('id', e->>'eventId', 'topic', e->>'topic', 'key', e->>'key', 'payload', e->'payload') AS row
         FROM outbox, json_array_elements(events) e ORDER BY e->>'eventId'`,
      ),
      failures: await all(
        'SELECT to_jsonb(f) AS row FROM (SELECT message_id, reason, entity FROM message_failures ORDER BY message_id) f',
      ),
    };
  };

  it('a rebuild from the commands into a fresh database equals the live tables, event for event', async () => {
    await live.stop();
    const before = await state(db);
    expect(before.issues.length).toBeGreaterThanOrEqual(15);
    const rebuilt = await kit.database();
    await kit.start(ns, rebuilt, env, group);
    await waitFor(
      'the rebuild to catch up',
      async () => {
        const now = await state(rebuilt);
        return (
          now.commands.length === before.commands.length &&
          now.failures.length === before.failures.length
        );
      },
      60_000,
    );
    const after = await state(rebuilt);
    expect(after.issues).toEqual(before.issues);
    expect(after.history).toEqual(before.history);
    expect(after.commands).toEqual(before.commands);
    expect(after.early).toEqual(before.early);
    expect(after.events).toEqual(before.events);
    expect(after.failures).toEqual(before.failures);
  }, 120_000);
});

describe('retention', () => {
  it('drops early commands that waited past the limit for an open that never came; nothing else', async () => {
    const target = await kit.database();
    const waiting = (issueId: number, issuedAt: string) =>
      system({ command: 'delete', issue_id: issueId, issued_at: issuedAt });
    const old = waiting(991, new Date(Date.now() - 8 * 86_400_000).toISOString());
    const recent = waiting(992, new Date(Date.now() - 6 * 86_400_000).toISOString());
    await target.pool.query(
      `INSERT INTO early_commands SELECT * FROM jsonb_populate_recordset(NULL::early_commands, $1::jsonb)`,
      [
        JSON.stringify(
          [old, recent].map((c, offset) => ({
            issue_id: c.issue_id,
            command_id: c.command_id,
            offset,
            command: c,
          })),
        ),
      ],
    );
    expect(await decideRetention(7)(target.pool, { size: 1 })).toEqual({ early_commands: 1 });
    const { rows } = await target.pool.query<{ issue_id: number }>(
      'SELECT issue_id FROM early_commands',
    );
    expect(rows).toEqual([{ issue_id: 992 }]);
  });
});
