import { randomUUID } from 'node:crypto';
import { type IsolatedDatabase, type IsolatedTopics } from '@shoal/testing';
import type { ShoalProducer } from '@shoal/producer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentApi } from '../src/api/server.js';
import { boundedReader } from '../src/api/store.js';
import {
  bearer,
  recordsOn,
  testApi,
  TOKENS,
  closeApiTest,
  openApiTestBase,
} from './api-support.js';

/**
 * Authentication, scopes, request validation, size, media type and rate limits: everything the
 * API refuses before it reads an issue. Each refusal produces nothing (the commands topic is
 * checked after every case).
 */

let topics: IsolatedTopics;
let db: IsolatedDatabase;
let producer: ShoalProducer;
let api: AgentApi;

beforeAll(async () => {
  ({ topics, db, producer } = await openApiTestBase());
  api = await testApi(db, producer, { SHOAL_API_BODY_LIMIT_BYTES: '2048' });
});
afterAll(() => closeApiTest({ api, producer, topics, db }));

const UNKNOWN = 987654;
type Scope = 'read' | 'claim' | 'write' | 'admin';
const routes: {
  method: 'GET' | 'POST' | 'DELETE' | 'PATCH';
  url: string;
  scope: Scope;
  body?: object;
  headers?: Record<string, string>;
}[] = [
  { method: 'GET', url: '/v1/issues', scope: 'read' },
  { method: 'GET', url: `/v1/issues/${UNKNOWN}`, scope: 'read' },
  { method: 'GET', url: `/v1/commands/${randomUUID()}`, scope: 'read' },
  { method: 'POST', url: `/v1/issues/${UNKNOWN}/claim`, scope: 'claim', body: {} },
  {
    method: 'POST',
    url: `/v1/issues/${UNKNOWN}/claim/renew`,
    scope: 'claim',
    body: {},
    headers: { 'x-claim-token': 'x' },
  },
  {
    method: 'DELETE',
    url: `/v1/issues/${UNKNOWN}/claim`,
    scope: 'claim',
    headers: { 'x-claim-token': 'x' },
  },
  {
    method: 'POST',
    url: `/v1/issues/${UNKNOWN}/transitions`,
    scope: 'write',
    body: { to_status: 'triaged' },
  },
  { method: 'POST', url: `/v1/issues/${UNKNOWN}/resolve`, scope: 'write', body: { type: 'now' } },
  {
    method: 'POST',
    url: `/v1/issues/${UNKNOWN}/duplicate`,
    scope: 'write',
    body: { duplicate_of: 1 },
  },
  { method: 'POST', url: `/v1/issues/${UNKNOWN}/notes`, scope: 'write', body: { note: 'n' } },
  {
    method: 'POST',
    url: `/v1/issues/${UNKNOWN}/events`,
    scope: 'write',
    body: { run_id: 'r1', phase: 'started' },
  },
  { method: 'PATCH', url: `/v1/issues/${UNKNOWN}`, scope: 'write', body: { severity: 'low' } },
];
const scopeNames: Scope[] = ['read', 'claim', 'write', 'admin'];

const send = (route: (typeof routes)[number], headers: Record<string, string>, body = route.body) =>
  api.app.inject({
    method: route.method,
    url: route.url,
    headers: { ...route.headers, ...headers },
    ...(body ? { payload: body } : {}),
  });

describe('every route × every scope', () => {
  const cases = routes.flatMap((route) => scopeNames.map((scope) => ({ route, scope })));
  it.each(
    cases.map(
      (c) =>
        [`${c.route.method} ${c.route.url.replace(String(UNKNOWN), '{id}')}`, c.scope, c] as const,
    ),
  )('%s with a %s token', async (_name, scope, { route }) => {
    const before = await recordsOn(topics.topics.lifecycleCommands);
    const response = await send(route, bearer(TOKENS[scope]));
    const allowed = scope === route.scope || scope === 'admin';
    if (!allowed) {
      expect(response.statusCode).toBe(403);
      expect(response.json()).toMatchObject({
        error: 'forbidden',
        message: `this token lacks the ${route.scope} scope`,
      });
    } else if (route.url === '/v1/issues') {
      expect(response.statusCode).toBe(200);
    } else {
      // allowed, and refused only because the issue (or command) is unknown
      expect(response.statusCode).toBe(404);
    }
    expect(await recordsOn(topics.topics.lifecycleCommands)).toBe(before);
  });

  it.each(routes.map((r) => [`${r.method} ${r.url}`, r] as const))(
    '%s: 401 without a token or with an unknown one',
    async (_name, route) => {
      const attempts: Record<string, string>[] = [
        {},
        { authorization: 'Bearer nope' },
        { authorization: 'Basic abc' },
      ];
      for (const headers of attempts) {
        const response = await send(route, headers);
        expect(response.statusCode).toBe(401);
        expect(response.json().error).toBe('unauthorized');
      }
    },
  );
});

describe('requests refused before anything is read or produced', () => {
  const writer = bearer(TOKENS.a);

  it('400 names every bad field of the body', async () => {
    const response = await api.app.inject({
      method: 'PATCH',
      url: '/v1/issues/5',
      headers: writer,
      payload: { severity: 'urgent', assignee: 7, sla_due_at: 'tomorrow', extra: true },
    });
    expect(response.statusCode).toBe(400);
    const paths = response.json().problems.map((p: { path: string }) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/body/severity',
        '/body/assignee',
        '/body/sla_due_at',
        '/body/extra',
      ]),
    );
  });

  it('400: a bad commit SHA, a resolution type that is none, a lease past an hour', async () => {
    const type = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/resolve',
      headers: writer,
      payload: { type: 'in_a_while' },
    });
    expect(type.statusCode).toBe(400);
    expect(type.json().problems.map((p: { path: string }) => p.path)).toEqual(['/body/type']);
    const sha = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/resolve',
      headers: writer,
      payload: { type: 'in_commit', commit_shas: ['not-a-sha'], repository: 'r' },
    });
    expect(sha.json().problems.map((p: { path: string }) => p.path)).toEqual([
      '/body/commit_shas/0',
    ]);
    const lease = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/claim',
      headers: writer,
      payload: { lease_seconds: 3601 },
    });
    expect(lease.statusCode).toBe(400);
    expect(lease.json().problems.map((p: { path: string }) => p.path)).toEqual([
      '/body/lease_seconds',
    ]);
  });

  it('400 names bad query parameters, path ids, and headers', async () => {
    const list = await api.app.inject({
      url: '/v1/issues?status=open&status=sleeping&claimable=maybe&limit=0&updated_since=yesterday',
      headers: writer,
    });
    expect(list.statusCode).toBe(400);
    expect(list.json().problems.map((p: { path: string }) => p.path)).toEqual(
      expect.arrayContaining([
        '/query/status/1',
        '/query/claimable',
        '/query/limit',
        '/query/updated_since',
      ]),
    );
    const cursor = await api.app.inject({ url: '/v1/issues?cursor=abc', headers: writer });
    expect(cursor.json().problems).toEqual([
      { path: '/query/cursor', message: 'not a cursor this API gave' },
    ]);
    const id = await api.app.inject({ url: '/v1/issues/9007199254740993', headers: writer });
    expect(id.statusCode).toBe(400);
    expect(id.json().problems[0].path).toBe('/params/id');
    const key = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/notes',
      headers: { ...writer, 'idempotency-key': 'not-a-uuid', 'if-match': 'v3' },
      payload: { note: 'x' },
    });
    expect(key.statusCode).toBe(400);
    expect(key.json().problems.map((p: { path: string }) => p.path)).toEqual(
      expect.arrayContaining(['/headers/idempotency-key', '/headers/if-match']),
    );
  });

  it('413 for a body over the limit, 415 for anything but JSON, 400 for JSON that does not parse', async () => {
    const big = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/notes',
      headers: writer,
      payload: { note: 'x'.repeat(4000) },
    });
    expect(big.statusCode).toBe(413);
    const text = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/notes',
      headers: { ...writer, 'content-type': 'text/plain' },
      payload: 'a note',
    });
    expect(text.statusCode).toBe(415);
    const broken = await api.app.inject({
      method: 'POST',
      url: '/v1/issues/5/notes',
      headers: { ...writer, 'content-type': 'application/json' },
      payload: '{"note":',
    });
    expect(broken.statusCode).toBe(400);
  });

  it('404 for an issue never opened; nothing produced by any of these', async () => {
    const before = await recordsOn(topics.topics.lifecycleCommands);
    const response = await api.app.inject({
      method: 'POST',
      url: `/v1/issues/${UNKNOWN}/claim`,
      headers: writer,
      payload: {},
    });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ error: 'not_found', message: `no issue ${UNKNOWN}` });
    expect(await recordsOn(topics.topics.lifecycleCommands)).toBe(before);
    expect(before).toBe(0);
  });
});

describe('rate limit', () => {
  it('429 with Retry-After per token: another token is not limited', async () => {
    const limited = await testApi(db, producer, {
      SHOAL_API_RATE_LIMIT: '3',
      SHOAL_API_RATE_WINDOW_SECONDS: '60',
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++)
        statuses.push(
          (await limited.app.inject({ url: '/v1/issues', headers: bearer(TOKENS.a) })).statusCode,
        );
      expect(statuses).toEqual([200, 200, 200, 429]);
      const refused = await limited.app.inject({ url: '/v1/issues', headers: bearer(TOKENS.a) });
      expect(refused.json().error).toBe('rate_limited');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      expect(
        (await limited.app.inject({ url: '/v1/issues', headers: bearer(TOKENS.b) })).statusCode,
      ).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('/openapi.json', () => {
  it('documents every route from the schemas in schemas/, with its scope and errors', async () => {
    const doc = (await api.app.inject({ url: '/openapi.json' })).json();
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/v1/commands/{id}',
      '/v1/issues',
      '/v1/issues/{id}',
      '/v1/issues/{id}/claim',
      '/v1/issues/{id}/claim/renew',
      '/v1/issues/{id}/duplicate',
      '/v1/issues/{id}/events',
      '/v1/issues/{id}/notes',
      '/v1/issues/{id}/resolve',
      '/v1/issues/{id}/transitions',
    ]);
    expect(doc.components.schemas.Issue.properties.status.enum).toContain('awaiting_verification');
    const claim = doc.paths['/v1/issues/{id}/claim'].post;
    expect(claim.security).toEqual([{ bearer: ['claim'] }]);
    expect(Object.keys(claim.responses)).toEqual(
      expect.arrayContaining([
        '200',
        '202',
        '400',
        '401',
        '403',
        '404',
        '409',
        '412',
        '413',
        '415',
        '429',
        '503',
      ]),
    );
    const events = doc.paths['/v1/issues/{id}/events'].post;
    expect(events.requestBody.content['application/json'].schema.properties.phase.enum).toEqual([
      'started',
      'progress',
      'succeeded',
      'failed',
      'cancelled',
    ]);
  });
});

describe("the API's reads", () => {
  it('hold at most their share of the pool at once, the rest queued (the consumers keep theirs)', async () => {
    const reads = boundedReader(db.pool, 2);
    const started = Date.now();
    const seen = await Promise.all(
      Array.from({ length: 6 }, () =>
        reads.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND query LIKE 'SELECT count(*)::int AS n FROM pg_stat_activity%'
              AND state = 'active' AND pg_sleep(0.2) IS NOT NULL`,
        ),
      ),
    );
    expect(Math.max(...seen.map((r) => r.rows[0]!.n))).toBeLessThanOrEqual(2);
    // three rounds of two
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });
});
