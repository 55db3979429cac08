import { createHash, randomUUID } from 'node:crypto';
import { startScheduled, type RunningConsumer } from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import type { ShoalProducer } from '@shoal/producer';
import {
  readAll,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentApi } from '../src/api/server.js';
import { etagOf, readOutcomes, shown } from '../src/api/store.js';
import { claimSweeper, SWEEPER_ACTOR } from '../src/sweeper.js';
import {
  bearer,
  openIssues,
  recordsOn,
  startDecide,
  testApi,
  unreachableProducer,
  TOKENS,
  closeApiTest,
  openApiTestBase,
} from './api-support.js';

/**
 * The agent API with lifecycle's decide consumer, against the real stack: commands produced,
 * decided, and answered with their outcome; every refusal the API can tell before producing is
 * answered at once with nothing on the topic.
 */

let topics: IsolatedTopics;
let db: IsolatedDatabase;
let producer: ShoalProducer;
let api: AgentApi;
let decide: RunningConsumer;

beforeAll(async () => {
  ({ topics, db, producer } = await openApiTestBase());
  api = await testApi(db, producer);
  decide = await startDecide(topics, db);
});
afterAll(() => closeApiTest({ api, decide, producer, topics, db }));

type Agent = keyof typeof TOKENS;
const call = (
  agent: Agent,
  method: 'GET' | 'POST' | 'DELETE' | 'PATCH',
  url: string,
  payload?: object,
  headers: Record<string, string> = {},
) =>
  api.app.inject({
    method,
    url,
    headers: { ...bearer(TOKENS[agent]), ...headers },
    ...(payload ? { payload } : {}),
  });
const commandsOnTopic = () => recordsOn(topics.topics.lifecycleCommands);

/** Runs `fn` and expects the commands topic to hold exactly what it held before. */
async function producesNothing<T>(fn: () => Promise<T>): Promise<T> {
  const before = await commandsOnTopic();
  const result = await fn();
  expect(await commandsOnTopic()).toBe(before);
  return result;
}

let nextIssue = 100;
async function freshIssue(projectId = 1): Promise<number> {
  const id = nextIssue++;
  await openIssues(producer, db.pool, [id], projectId);
  return id;
}

describe('an agent works an issue', () => {
  it('claim, move, note, run event, update, resolve in a commit: each 200 with the issue and its ETag; history in order', async () => {
    const id = await freshIssue();
    const fetched = await call('a', 'GET', `/v1/issues/${id}`);
    expect(fetched.statusCode).toBe(200);
    expect(fetched.json().issue).toMatchObject({
      issue_id: id,
      status: 'new',
      version: 1,
      severity: 'high',
    });
    const etag = fetched.headers.etag as string;
    expect(etag).toMatch(/^"1-/);
    expect(
      (await call('a', 'GET', `/v1/issues/${id}`, undefined, { 'if-none-match': etag })).statusCode,
    ).toBe(304);

    const claim = await call('a', 'POST', `/v1/issues/${id}/claim`, { lease_seconds: 120 });
    expect(claim.statusCode).toBe(200);
    const token = claim.json().claim_token as string;
    expect(token.length).toBeGreaterThan(20);
    expect(claim.json()).toMatchObject({
      outcome: 'applied',
      issue: { claimed_by: 'agent-a', version: 2 },
    });
    expect(claim.headers.etag).toMatch(/^"2-/);
    // the token itself is stored nowhere: only its SHA-256
    const stored = await db.pool.query('SELECT claim_token_sha256 FROM issues WHERE id = $1', [id]);
    expect(stored.rows[0].claim_token_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored.rows)).not.toContain(token);
    // a GET after a change is not 304 with the old ETag
    expect(
      (await call('a', 'GET', `/v1/issues/${id}`, undefined, { 'if-none-match': etag })).statusCode,
    ).toBe(200);

    const claimHeader = { 'x-claim-token': token };
    const steps = [
      () => call('a', 'POST', `/v1/issues/${id}/claim/renew`, { lease_seconds: 300 }, claimHeader),
      () =>
        call(
          'a',
          'POST',
          `/v1/issues/${id}/transitions`,
          { to_status: 'in_progress' },
          claimHeader,
        ),
      () =>
        call(
          'a',
          'POST',
          `/v1/issues/${id}/notes`,
          { note: 'looking at the stack trace' },
          claimHeader,
        ),
      () =>
        call(
          'a',
          'POST',
          `/v1/issues/${id}/events`,
          { run_id: 'run-1', phase: 'started', summary: 'bisecting' },
          claimHeader,
        ),
      () =>
        call(
          'a',
          'PATCH',
          `/v1/issues/${id}`,
          { severity: 'critical', category: 'db' },
          claimHeader,
        ),
      () =>
        call(
          'a',
          'POST',
          `/v1/issues/${id}/resolve`,
          { type: 'in_commit', commit_shas: ['abcdef1'], repository: 'acme/api', notes: 'fixed' },
          claimHeader,
        ),
    ];
    const answers = [];
    // one after another: each waits for its outcome, so the log holds them in this order; each
    // answered from what decide handed over, exactly as a read of the committed rows shows it
    await asCommitted(claim);
    for (const step of steps) {
      answers.push(await step());
      await asCommitted(answers.at(-1)!);
    }
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(answers.at(-1)!.json().issue).toMatchObject({
      status: 'resolved',
      version: 8,
      severity: 'critical',
      category: 'db',
      claimed_by: null,
      resolution: { type: 'in_commit', commit_shas: ['abcdef1'], repository: 'acme/api' },
    });

    const { history } = (await call('read', 'GET', `/v1/issues/${id}`)).json();
    expect(
      history.map((h: { version: number; event_type: string; actor: string }) => [
        h.version,
        h.event_type,
        h.actor,
      ]),
    ).toEqual([
      [1, 'created', 'lifecycle-intake'],
      [2, 'claimed', 'agent-a'],
      [3, 'claim_renewed', 'agent-a'],
      [4, 'transitioned', 'agent-a'],
      [5, 'note_added', 'agent-a'],
      [6, 'event_attached', 'agent-a'],
      [7, 'updated', 'agent-a'],
      [8, 'resolved', 'agent-a'],
    ]);
  });

  /** An answer's issue and ETag are what the committed outcome and issue read back give (store.ts readOutcomes). */
  async function asCommitted(answer: Awaited<ReturnType<typeof call>>) {
    const body = answer.json();
    const read = (await readOutcomes(db.pool, [body.command_id])).get(body.command_id)!;
    const issue = shown(read.current!);
    expect(answer.headers.etag).toBe(etagOf(issue));
    expect(body.issue).toEqual(issue);
  }

  it('a bare POST …/claim (no body, no content type) claims for the default 300 s; a bare note names its field', async () => {
    const id = await freshIssue();
    const claim = await call('a', 'POST', `/v1/issues/${id}/claim`);
    expect(claim.statusCode).toBe(200);
    const { claimed_by, claim_expires_at } = claim.json().issue;
    expect(claimed_by).toBe('agent-a');
    expect(Date.parse(claim_expires_at) - Date.now()).toBeGreaterThan(290_000);
    const note = await producesNothing(() => call('a', 'POST', `/v1/issues/${id}/notes`));
    expect(note.statusCode).toBe(400);
    expect(note.json().problems.map((p: { path: string }) => p.path)).toEqual(['/body/note']);
  });

  it('Idempotency-Key is the command id: a retry gets the first outcome and produces nothing', async () => {
    const id = await freshIssue();
    const key = randomUUID();
    const first = await call(
      'a',
      'POST',
      `/v1/issues/${id}/notes`,
      { note: 'once' },
      { 'idempotency-key': key },
    );
    expect(first.statusCode).toBe(200);
    expect(first.json().command_id).toBe(key);
    // on the topic: keyed by issue id, the command id as message id, the token's actor, a server time
    const record = (await readAll(topics.topics.lifecycleCommands)).find(
      (r) => r.headers['shoal.message-id'] === key,
    )!;
    expect(record.key).toBe(String(id));
    const command = JSON.parse(record.value!.subarray(5).toString());
    expect(command).toMatchObject({
      command_id: key,
      command: 'add_note',
      issue_id: id,
      actor: 'agent-a',
      origin: 'agent',
      note: 'once',
    });
    expect(Math.abs(Date.parse(command.issued_at) - Date.now())).toBeLessThan(60_000);
    const retry = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/notes`, { note: 'once' }, { 'idempotency-key': key }),
    );
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toMatchObject({ command_id: key, outcome: 'applied' });
    const { history } = (await call('a', 'GET', `/v1/issues/${id}`)).json();
    expect(
      history.filter((h: { event_type: string }) => h.event_type === 'note_added'),
    ).toHaveLength(1);
    // the key names this command: another issue's or another agent's request with it is refused
    const elsewhere = await producesNothing(() =>
      call('b', 'POST', `/v1/issues/${id}/notes`, { note: 'once' }, { 'idempotency-key': key }),
    );
    expect(elsewhere.statusCode).toBe(400);
    expect(elsewhere.json().problems[0].path).toBe('/headers/idempotency-key');
    const outcome = await call('read', 'GET', `/v1/commands/${key}`);
    expect(outcome.json()).toMatchObject({
      command_id: key,
      outcome: 'applied',
      command: 'add_note',
      actor: 'agent-a',
      version: 2,
    });
  });

  it('a claim retried with its Idempotency-Key is answered the same claim token while it is the issue’s claim, so a lost reply loses no claim; once released, no token', async () => {
    const id = await freshIssue();
    const key = randomUUID();
    const claim = (headers: Record<string, string> = {}) =>
      call('a', 'POST', `/v1/issues/${id}/claim`, {}, { 'idempotency-key': key, ...headers });
    // the first answer is a 202 (not waited for): the token comes with it, the outcome later
    const pending = await claim({ prefer: 'wait=0' });
    expect(pending.statusCode).toBe(202);
    const token = pending.json().claim_token as string;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await waitFor(
      'the claim decided',
      async () => (await call('read', 'GET', `/v1/commands/${key}`)).statusCode === 200,
    );
    const record = (await readAll(topics.topics.lifecycleCommands)).find(
      (r) => r.headers['shoal.message-id'] === key,
    )!;
    expect(JSON.parse(record.value!.subarray(5).toString()).claim_token).toBe(
      createHash('sha256').update(token).digest('hex'),
    );

    const retry = await producesNothing(() => claim());
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toMatchObject({ command_id: key, outcome: 'applied', claim_token: token });
    const renew = await call(
      'a',
      'POST',
      `/v1/issues/${id}/claim/renew`,
      {},
      { 'x-claim-token': token },
    );
    expect(renew.statusCode).toBe(200);

    const release = await call('a', 'DELETE', `/v1/issues/${id}/claim`, undefined, {
      'x-claim-token': token,
    });
    expect(release.statusCode).toBe(200);
    const late = await producesNothing(() => claim());
    expect(late.statusCode).toBe(200);
    expect(late.json().outcome).toBe('applied');
    expect(late.json()).not.toHaveProperty('claim_token');
  });

  it('Prefer: wait=0 answers 202 with Location; the command resource then shows its outcome', async () => {
    const id = await freshIssue();
    const pending = await call('a', 'POST', `/v1/issues/${id}/claim`, {}, { prefer: 'wait=0' });
    expect(pending.statusCode).toBe(202);
    const { command_id, claim_token } = pending.json();
    expect(claim_token).toBeTruthy();
    expect(pending.headers.location).toBe(`/v1/commands/${command_id}`);
    let outcome: { outcome?: string } = {};
    await waitFor('the claim decided', async () => {
      const answer = await call('read', 'GET', pending.headers.location as string);
      outcome = answer.json();
      return answer.statusCode === 200;
    });
    expect(outcome).toMatchObject({ outcome: 'applied', command: 'claim' });
    // the token the 202 gave holds the claim
    const moved = await call(
      'a',
      'POST',
      `/v1/issues/${id}/transitions`,
      { to_status: 'in_progress' },
      { 'x-claim-token': claim_token },
    );
    expect(moved.statusCode).toBe(200);
  });
});

describe('refusals the API tells before producing', () => {
  it('a resolution without what its type needs: 400 naming the field', async () => {
    const id = await freshIssue();
    for (const [payload, path] of [
      [{ type: 'in_commit', repository: 'acme/api' }, '/body/commit_shas'],
      [{ type: 'in_release' }, '/body/release'],
    ] as const) {
      const refused = await producesNothing(() =>
        call('a', 'POST', `/v1/issues/${id}/resolve`, payload),
      );
      expect(refused.statusCode).toBe(400);
      expect(refused.json().problems.map((p: { path: string }) => p.path)).toEqual([path]);
    }
    const moved = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, {
        to_status: 'resolved',
        resolution: { type: 'in_release' },
      }),
    );
    expect(moved.json().problems[0].path).toBe('/body/resolution');
    // in progress, its holder hands it over for verification, resolved in a release
    const token = (await call('a', 'POST', `/v1/issues/${id}/claim`, {})).json()
      .claim_token as string;
    const claim = { 'x-claim-token': token };
    expect(
      (await call('a', 'POST', `/v1/issues/${id}/transitions`, { to_status: 'in_progress' }, claim))
        .statusCode,
    ).toBe(200);
    const handed = await call(
      'a',
      'POST',
      `/v1/issues/${id}/resolve`,
      { type: 'in_release', release: '2.4.1', to_status: 'awaiting_verification' },
      claim,
    );
    expect(handed.statusCode).toBe(200);
    expect(handed.json().issue).toMatchObject({
      status: 'awaiting_verification',
      claimed_by: null,
      resolution: { type: 'in_release', release: '2.4.1' },
    });
  });

  it('an illegal move: 409 invalid_transition naming the allowed moves', async () => {
    const id = await freshIssue();
    const refused = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, { to_status: 'awaiting_verification' }),
    );
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toEqual({
      error: 'invalid_transition',
      message: expect.stringContaining('new → awaiting_verification'),
      issue: { status: 'new', version: 1, claimed_by: null, claim_expires_at: null },
      allowed_transitions: ['triaged', 'resolved', 'closed'],
    });
    // to the status it has is no move either
    const same = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, { to_status: 'new' }),
    );
    expect(same.json().error).toBe('invalid_transition');
  });

  it('a claimed issue: another agent gets 409 claim_conflict naming the holder, for a claim and for a move', async () => {
    const id = await freshIssue();
    expect((await call('a', 'POST', `/v1/issues/${id}/claim`, {})).statusCode).toBe(200);
    for (const [url, body] of [
      [`/v1/issues/${id}/claim`, {}],
      [`/v1/issues/${id}/transitions`, { to_status: 'triaged' }],
      [`/v1/issues/${id}/resolve`, { type: 'now' }],
    ] as const) {
      const refused = await producesNothing(() => call('b', 'POST', url, body));
      expect(refused.statusCode).toBe(409);
      expect(refused.json()).toMatchObject({
        error: 'claim_conflict',
        issue: { claimed_by: 'agent-a', status: 'new', version: 2 },
        allowed_transitions: [],
      });
    }
    // renew or release with a wrong token: the holder is named too
    const wrong = await producesNothing(() =>
      call('b', 'DELETE', `/v1/issues/${id}/claim`, undefined, {
        'x-claim-token': 'not-the-token',
      }),
    );
    expect(wrong.json()).toMatchObject({
      error: 'claim_conflict',
      issue: { claimed_by: 'agent-a' },
    });
    // a move that needs the claim, without it: not allowed, and the moves that are
    const noClaim = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, { to_status: 'in_progress' }),
    );
    expect(noClaim.statusCode).toBe(409);
  });

  it('If-Match with another version: 412 with the current version; with the current one the command applies', async () => {
    const id = await freshIssue();
    const stale = await producesNothing(() =>
      call('a', 'PATCH', `/v1/issues/${id}`, { assignee: 'ann' }, { 'if-match': '"7"' }),
    );
    expect(stale.statusCode).toBe(412);
    expect(stale.json()).toMatchObject({ error: 'version_conflict', current_version: 1 });
    const etag = (await call('a', 'GET', `/v1/issues/${id}`)).headers.etag as string;
    const applied = await call(
      'a',
      'PATCH',
      `/v1/issues/${id}`,
      { assignee: 'ann' },
      { 'if-match': etag },
    );
    expect(applied.statusCode).toBe(200);
    expect(applied.json().issue).toMatchObject({ assignee: 'ann', version: 2 });
  });

  it('404 for a deleted issue and for one whose project is deleted; 400 for a duplicate target that is not a live issue of the project', async () => {
    const [deleted, hidden, other, canonical, dup] = [
      await freshIssue(),
      await freshIssue(7),
      await freshIssue(8),
      await freshIssue(),
      await freshIssue(),
    ];
    const system = (command: 'delete' | 'hide', issue: number) =>
      producer.publishLifecycleCommand({
        command_id: randomUUID(),
        command,
        issue_id: issue,
        actor: 'lifecycle-intake',
        origin: 'system',
        issued_at: new Date().toISOString(),
      });
    await system('delete', deleted);
    await system('hide', hidden);
    await waitFor('the delete and hide applied', async () => {
      const { rows } = await db.pool.query(
        'SELECT count(*)::int AS n FROM issues WHERE (id = $1 AND deleted_at IS NOT NULL) OR (id = $2 AND hidden)',
        [deleted, hidden],
      );
      return rows[0].n === 2;
    });
    for (const issue of [deleted, hidden]) {
      expect((await call('a', 'GET', `/v1/issues/${issue}`)).statusCode).toBe(404);
      const note = await producesNothing(() =>
        call('a', 'POST', `/v1/issues/${issue}/notes`, { note: 'x' }),
      );
      expect(note.statusCode).toBe(404);
    }
    const list = (await call('a', 'GET', '/v1/issues?limit=200'))
      .json()
      .issues.map((i: { issue_id: number }) => i.issue_id);
    expect(list).not.toContain(deleted);
    expect(list).not.toContain(hidden);

    for (const [target, message] of [
      [dup, 'is this issue'],
      [deleted, `no live issue ${deleted}`],
      [hidden, `no live issue ${hidden}`],
      [other, `issue ${other} is in another project`],
      [424242, 'no live issue 424242'],
    ] as const) {
      const refused = await producesNothing(() =>
        call('a', 'POST', `/v1/issues/${dup}/duplicate`, { duplicate_of: target }),
      );
      expect(refused.statusCode).toBe(400);
      expect(refused.json().problems).toEqual([{ path: '/body/duplicate_of', message }]);
    }
    const marked = await call('a', 'POST', `/v1/issues/${dup}/duplicate`, {
      duplicate_of: canonical,
    });
    expect(marked.statusCode).toBe(200);
    expect(marked.json().issue).toMatchObject({
      status: 'closed',
      close_reason: 'duplicate',
      duplicate_of: canonical,
    });
  });

  it('admin: forces a release without the token and reopens a closed issue; a write token may not', async () => {
    const id = await freshIssue();
    expect((await call('a', 'POST', `/v1/issues/${id}/claim`, {})).statusCode).toBe(200);
    const noToken = await producesNothing(() => call('b', 'DELETE', `/v1/issues/${id}/claim`));
    expect(noToken.statusCode).toBe(400);
    expect(noToken.json().problems[0].path).toBe('/headers/x-claim-token');
    const forced = await call('admin', 'DELETE', `/v1/issues/${id}/claim`);
    expect(forced.statusCode).toBe(200);
    expect(forced.json().issue.claimed_by).toBeNull();

    expect(
      (
        await call('a', 'POST', `/v1/issues/${id}/transitions`, {
          to_status: 'closed',
          close_reason: 'wont_fix',
        })
      ).statusCode,
    ).toBe(200);
    const reopen = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, { to_status: 'triaged' }),
    );
    expect(reopen.statusCode).toBe(409);
    expect(reopen.json()).toMatchObject({ error: 'invalid_transition', allowed_transitions: [] });
    const reopened = await call('admin', 'POST', `/v1/issues/${id}/transitions`, {
      to_status: 'triaged',
    });
    expect(reopened.statusCode).toBe(200);
    expect(reopened.json().issue).toMatchObject({ status: 'triaged', close_reason: null });
  });

  it('tokens cannot send system commands: a body naming command, origin or admin is 400', async () => {
    const id = await freshIssue();
    const refused = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, {
        to_status: 'regressed',
        origin: 'system',
        admin: true,
        command: 'sync_status',
      }),
    );
    expect(refused.statusCode).toBe(400);
    expect(
      refused
        .json()
        .problems.map((p: { path: string }) => p.path)
        .sort(),
    ).toEqual(['/body/admin', '/body/command', '/body/origin']);
    // and the system-only move itself is refused
    const regressed = await producesNothing(() =>
      call('a', 'POST', `/v1/issues/${id}/transitions`, { to_status: 'regressed' }),
    );
    expect(regressed.statusCode).toBe(409);
  });
});

describe('rate limits and conditional GETs', () => {
  it('a 304 is not charged to the token; a GET that answers 200 is', async () => {
    const id = await freshIssue();
    const limited = await testApi(db, producer, { SHOAL_API_RATE_LIMIT: '2' });
    try {
      const get = (headers: Record<string, string> = {}) =>
        limited.app.inject({
          url: `/v1/issues/${id}`,
          headers: { ...bearer(TOKENS.read), ...headers },
        });
      const first = await get();
      expect(first.statusCode).toBe(200);
      const etag = first.headers.etag as string;
      for (let i = 0; i < 5; i++)
        expect((await get({ 'if-none-match': etag })).statusCode).toBe(304);
      expect((await get({ 'if-none-match': '"0-stale"' })).statusCode).toBe(200);
      const limitedNow = await get();
      expect(limitedNow.statusCode).toBe(429);
      expect(limitedNow.headers['retry-after']).toBeDefined();
      // a read token is still a token: without the read scope, even a matching ETag is 403
      const writer = await limited.app.inject({
        url: `/v1/issues/${id}`,
        headers: { ...bearer(TOKENS.write), 'if-none-match': etag },
      });
      expect(writer.statusCode).toBe(403);
    } finally {
      await limited.close();
    }
  });
});

describe('when the broker does not acknowledge', () => {
  it('503 with Retry-After, and nothing reaches the topic', async () => {
    const id = await freshIssue();
    const dead = await unreachableProducer(topics);
    const offline = await testApi(db, dead);
    try {
      const refused = await producesNothing(() =>
        offline.app.inject({
          method: 'POST',
          url: `/v1/issues/${id}/notes`,
          headers: bearer(TOKENS.a),
          payload: { note: 'lost?' },
        }),
      );
      expect(refused.statusCode).toBe(503);
      expect(refused.headers['retry-after']).toBe('5');
      expect(refused.json()).toMatchObject({
        error: 'unavailable',
        command_id: expect.any(String),
      });
      // the retry it asks for, with the command id it named, applies once the broker answers
      const key = refused.json().command_id as string;
      const retried = await call(
        'a',
        'POST',
        `/v1/issues/${id}/notes`,
        { note: 'lost?' },
        { 'idempotency-key': key },
      );
      expect(retried.statusCode).toBe(200);
      expect(retried.json().command_id).toBe(key);
    } finally {
      await offline.close();
      await dead.close().catch(() => undefined);
    }
  });
});

describe('the race: two agents claim one issue, 100 rounds', () => {
  it('one winner each round; the loser gets 409 naming the holder', async () => {
    const id = await freshIssue();
    for (let round = 0; round < 100; round++) {
      const answers = await Promise.all([
        call('a', 'POST', `/v1/issues/${id}/claim`, {}),
        call('b', 'POST', `/v1/issues/${id}/claim`, {}),
      ]);
      const statuses = answers.map((a) => a.statusCode).sort();
      expect(statuses, `round ${round}`).toEqual([200, 409]);
      const winner = answers.find((a) => a.statusCode === 200)!;
      const loser = answers.find((a) => a.statusCode === 409)!;
      const holder = winner.json().issue.claimed_by as string;
      expect(loser.json()).toMatchObject({
        error: 'claim_conflict',
        issue: { claimed_by: holder },
      });
      const release = await call(
        holder === 'agent-a' ? 'a' : 'b',
        'DELETE',
        `/v1/issues/${id}/claim`,
        undefined,
        {
          'x-claim-token': winner.json().claim_token,
        },
      );
      expect(release.statusCode, `release in round ${round}`).toBe(200);
    }
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM issue_history WHERE issue_id = $1 AND event_type = 'claimed'",
      [id],
    );
    expect(rows[0].n).toBe(100);
  }, 180_000);
});

describe('GET /v1/issues', () => {
  it('filters, keyset pages with next_cursor always, and a cursor that later returns what changed', async () => {
    const project = 900;
    const ids = [await freshIssue(project), await freshIssue(project), await freshIssue(project)];
    const [first, second, third] = ids as [number, number, number];
    const claimed = await call('a', 'POST', `/v1/issues/${first}/claim`, {});
    expect(claimed.statusCode).toBe(200);
    expect(
      (
        await call('a', 'PATCH', `/v1/issues/${second}`, {
          severity: 'low',
          assignee: 'ann',
          category: 'ui',
        })
      ).statusCode,
    ).toBe(200);
    expect(
      (await call('a', 'POST', `/v1/issues/${third}/transitions`, { to_status: 'closed' }))
        .statusCode,
    ).toBe(200);

    const list = async (query: string) => {
      const answer = await call('read', 'GET', `/v1/issues?project=${project}&${query}`);
      expect(answer.statusCode, query).toBe(200);
      return answer.json() as {
        issues: { issue_id: number }[];
        next_cursor: string;
        has_more: boolean;
      };
    };
    const idsOf = async (query: string) => (await list(query)).issues.map((i) => i.issue_id).sort();
    expect(await idsOf('status=new')).toEqual([first, second]);
    expect(await idsOf('status=open')).toEqual([first, second]);
    expect(await idsOf('status=done')).toEqual([third]);
    expect(await idsOf('status=closed&status=new')).toEqual([first, second, third]);
    expect(await idsOf('claimable=true')).toEqual([second]);
    expect(await idsOf('claimable=false')).toEqual([first, third]);
    expect(await idsOf('claimed_by=agent-a')).toEqual([first]);
    expect(await idsOf('assignee=ann&severity=low&category=ui')).toEqual([second]);
    expect(await idsOf('severity=high')).toEqual([first, third]);
    expect(await idsOf('sla_breached=true')).toEqual([]);
    expect(await idsOf('sla_breached=false')).toEqual([first, second, third]);
    expect(await idsOf('trace_id=none')).toEqual([]);
    expect(
      await idsOf(
        `updated_since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`,
      ),
    ).toEqual([]);

    // pages of one, in (updated_at, id) order, each with a cursor; the last page still has one
    const seen: number[] = [];
    let page = await list('limit=1');
    for (;;) {
      seen.push(...page.issues.map((i) => i.issue_id));
      expect(page.next_cursor).toBeTruthy();
      if (!page.has_more) break;
      page = await list(`limit=1&cursor=${page.next_cursor}`);
    }
    expect(seen.sort()).toEqual([first, second, third]);
    const end = await list(`limit=1&cursor=${page.next_cursor}`);
    expect(end.issues).toEqual([]);
    expect(end.next_cursor).toBe(page.next_cursor);
    // a later change shows after the cursor the client kept
    expect(
      (await call('a', 'POST', `/v1/issues/${second}/notes`, { note: 'moved on' })).statusCode,
    ).toBe(200);
    expect((await list(`cursor=${end.next_cursor}`)).issues.map((i) => i.issue_id)).toEqual([
      second,
    ]);
  });

  it('pages in updated_at order to the microsecond: issues changed within one millisecond are each listed once', async () => {
    const project = 901;
    const ids = [await freshIssue(project), await freshIssue(project), await freshIssue(project)];
    // later microseconds for lower ids: an order by the millisecond text the answer shows, then by
    // id, disagrees with the cursor's (updated_at, id) and would skip the rest
    await db.pool.query(
      `UPDATE issues SET updated_at = '2026-11-30T12:00:00Z'::timestamptz
         + make_interval(secs => (1000 - 300 * array_position($1::bigint[], id)) / 1e6)
       WHERE id = ANY($1::bigint[])`,
      [ids],
    );
    const seen: number[] = [];
    let cursor = '';
    for (let page = 0; page < 5; page++) {
      const answer = await call('read', 'GET', `/v1/issues?project=${project}&limit=1${cursor}`);
      expect(answer.statusCode).toBe(200);
      const { issues, next_cursor, has_more } = answer.json();
      seen.push(...issues.map((i: { issue_id: number }) => i.issue_id));
      if (!has_more) break;
      cursor = `&cursor=${next_cursor}`;
    }
    expect(seen).toEqual([...ids].reverse());
  });
});

describe('leases', () => {
  it('a lapsed lease not yet swept: the old token gets 409 lease_expired, nothing produced', async () => {
    const id = await freshIssue();
    const claim = await call('a', 'POST', `/v1/issues/${id}/claim`, { lease_seconds: 1 });
    expect(claim.statusCode).toBe(200);
    const expiresAt = Date.parse(claim.json().issue.claim_expires_at);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 100));
    const renew = await producesNothing(() =>
      call(
        'a',
        'POST',
        `/v1/issues/${id}/claim/renew`,
        {},
        { 'x-claim-token': claim.json().claim_token },
      ),
    );
    expect(renew.statusCode).toBe(409);
    expect(renew.json()).toMatchObject({
      error: 'lease_expired',
      issue: { claimed_by: 'agent-a' },
    });
    // and anyone may claim it now
    expect((await call('b', 'POST', `/v1/issues/${id}/claim`, {})).statusCode).toBe(200);
  });

  it('a 2 s lease lapses: claim_expired by the sweeper, back to triaged, claimable, the old token refused', async () => {
    const sweeper = startScheduled({
      jobs: [claimSweeper({ lifecycleCommands: topics.topics.lifecycleCommands, everyMs: 200 })],
      group: uniqueName('sweeper-'),
      pool: db.pool,
      logger: createLogger('lifecycle-sweeper-test', 'silent'),
    });
    try {
      const id = await freshIssue();
      const claim = await call('a', 'POST', `/v1/issues/${id}/claim`, { lease_seconds: 2 });
      const token = claim.json().claim_token as string;
      const moved = await call(
        'a',
        'POST',
        `/v1/issues/${id}/transitions`,
        { to_status: 'in_progress' },
        { 'x-claim-token': token },
      );
      expect(moved.json().issue).toMatchObject({ status: 'in_progress', claimed_by: 'agent-a' });
      const claimedAt = Date.parse(claim.json().issue.claim_expires_at) - 2000;

      let issue: { status: string; claimed_by: string | null } = { status: '', claimed_by: '' };
      await waitFor(
        'the lease to lapse',
        async () => {
          issue = (await call('read', 'GET', `/v1/issues/${id}`)).json().issue;
          return issue.status === 'triaged';
        },
        20_000,
      ).catch(async (error: Error) => {
        // what the sweeper and decide made of it, for a failure to say
        const state = await db.pool.query(
          `SELECT (SELECT json_agg(s) FROM claim_sweeps s WHERE issue_id = $1) AS sweeps,
                  (SELECT json_agg(c) FROM lifecycle_commands c WHERE issue_id = $1) AS outcomes,
                  (SELECT json_agg(f) FROM outbox_failures f) AS outbox_failures`,
          [id],
        );
        throw new Error(`${error.message}: ${JSON.stringify(state.rows[0])}`);
      });
      expect(Date.now() - claimedAt).toBeGreaterThanOrEqual(2000);
      expect(issue).toMatchObject({ status: 'triaged', claimed_by: null });
      const { history } = (await call('read', 'GET', `/v1/issues/${id}`)).json();
      expect(history.at(-1)).toMatchObject({
        event_type: 'claim_expired',
        actor: SWEEPER_ACTOR,
        from_status: 'in_progress',
        to_status: 'triaged',
      });
      const claimable = (await call('read', 'GET', `/v1/issues?claimable=true&limit=200`)).json()
        .issues;
      expect(claimable.map((i: { issue_id: number }) => i.issue_id)).toContain(id);

      for (const [method, url, body] of [
        ['POST', `/v1/issues/${id}/claim/renew`, {}],
        ['POST', `/v1/issues/${id}/transitions`, { to_status: 'in_progress' }],
        ['DELETE', `/v1/issues/${id}/claim`, undefined],
      ] as const) {
        const refused = await producesNothing(() =>
          call('a', method, url, body, { 'x-claim-token': token }),
        );
        expect(refused.statusCode, `${method} ${url}`).toBe(409);
      }
      expect((await call('b', 'POST', `/v1/issues/${id}/claim`, {})).statusCode).toBe(200);
    } finally {
      await sweeper.stop();
    }
  });
});
