import fs from 'node:fs';
import path from 'node:path';
import { schemasDir } from '@shoal/contracts';
import { createLogger } from '@shoal/observability';
import { createProducer, type ShoalProducer } from '@shoal/producer';
import { connections, isolatedTopics, withAdmin, type IsolatedTopics } from '@shoal/testing';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway } from '../src/app.js';

const example = (name: string) =>
  JSON.parse(fs.readFileSync(path.join(schemasDir, 'examples', name), 'utf8')) as Record<
    string,
    unknown
  >;
const sentry = example('occurrence.sentry-monitor-failure.json');
const shoal = example('occurrence.shoal-extended.json');
const resolve = example('status-change.sentry-resolve.json');

let ns: IsolatedTopics;
let producer: ShoalProducer;
let app: FastifyInstance;
const logger = createLogger('gateway-test', 'silent');
const tokens = new Map([
  ['secret', new Set(['ingest'])],
  ['reader', new Set(['read'])],
]);

beforeAll(async () => {
  ns = await isolatedTopics();
  producer = createProducer({
    brokers: connections().KAFKA_BROKERS,
    registryUrl: connections().SCHEMA_REGISTRY_URL,
    namespace: ns.namespace,
  });
  app = await buildGateway({
    producer,
    tokens,
    maxItems: 5,
    bodyLimitBytes: 64 * 1024,
    logger,
    checks: { kafka: async () => undefined },
  });
});
afterAll(async () => {
  await app.close();
  await producer.close();
  await ns.drop();
});

const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: { authorization: 'Bearer secret', 'content-type': 'application/json', ...headers },
  });

const onTopic = async (topic: string) =>
  (await withAdmin((admin) => admin.fetchTopicOffsets(topic))).reduce(
    (n, p) => n + Number(p.high),
    0,
  );

describe('POST /v1/occurrences', () => {
  it('accepts a Sentry issue-platform occurrence unchanged, once the broker acknowledged it', async () => {
    const before = await onTopic(ns.topics.occurrences);
    const response = await post('/v1/occurrences', sentry);
    expect(response.statusCode).toBe(202);
    expect(response.json()).toEqual({ accepted: 1, ids: [sentry.id] });
    expect(await onTopic(ns.topics.occurrences)).toBe(before + 1);
  });

  it('accepts an array, routing Sentry status-change items to the status-changes topic', async () => {
    const [occurrences, changes] = [
      await onTopic(ns.topics.occurrences),
      await onTopic(ns.topics.statusChanges),
    ];
    const response = await post('/v1/occurrences', [shoal, sentry, resolve]);
    expect(response.statusCode).toBe(202);
    expect(response.json().accepted).toBe(3);
    expect(await onTopic(ns.topics.occurrences)).toBe(occurrences + 2);
    expect(await onTopic(ns.topics.statusChanges)).toBe(changes + 1);
  });

  it('names every bad field of every item (400), and one bad item rejects the whole array: nothing published', async () => {
    const before = await onTopic(ns.topics.occurrences);
    const { project_id: _p, ...noProject } = shoal;
    const response = await post('/v1/occurrences', [
      sentry,
      { ...noProject, level: 'loud', fingerprint: [] },
      sentry,
    ]);
    expect(response.statusCode).toBe(400);
    const body = response.json();
    expect(body.error).toBe('invalid_payload');
    expect(body.message).toBe('1 of 3 items are invalid; nothing was published');
    expect(
      body.problems.map((p: { index: number; path: string }) => `${p.index}${p.path}`),
    ).toEqual(expect.arrayContaining(['1/project_id', '1/level', '1/fingerprint']));
    expect(await onTopic(ns.topics.occurrences)).toBe(before);
  });

  it('refuses invalid JSON (400), a wrong content type (415), a body over the limit and too many items (413)', async () => {
    expect((await post('/v1/occurrences', '{"id": ')).statusCode).toBe(400);
    expect(
      (await post('/v1/occurrences', 'id=1', { 'content-type': 'text/plain' })).statusCode,
    ).toBe(415);
    expect(
      (await post('/v1/occurrences', { ...sentry, issue_title: 'x'.repeat(70 * 1024) })).statusCode,
    ).toBe(413);
    const tooMany = await post('/v1/occurrences', Array(6).fill(sentry));
    expect(tooMany.statusCode).toBe(413);
    expect(tooMany.json().message).toBe('6 items; at most 5 per request');
  });

  it('wants a token (401) with the ingest scope (403)', async () => {
    expect((await post('/v1/occurrences', sentry, { authorization: '' })).statusCode).toBe(401);
    expect(
      (await post('/v1/occurrences', sentry, { authorization: 'Bearer wrong' })).statusCode,
    ).toBe(401);
    expect(
      (await post('/v1/occurrences', sentry, { authorization: 'Bearer reader' })).statusCode,
    ).toBe(403);
  });
});

describe('POST /v1/status-changes', () => {
  it('publishes a status change, keyed like its occurrences', async () => {
    const response = await post('/v1/status-changes', resolve);
    expect(response.statusCode).toBe(202);
    const bad = await post('/v1/status-changes', { ...resolve, new_status: 9 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().problems[0]).toMatchObject({ index: 0, path: '/new_status' });
  });
});

describe('when the broker is unavailable', () => {
  it('answers 503 with Retry-After, never a silent 202', async () => {
    const down = createProducer({
      brokers: ['127.0.0.1:1'],
      registryUrl: connections().SCHEMA_REGISTRY_URL,
      namespace: ns.namespace,
      retry: { retries: 1, initialRetryTime: 50 },
    });
    const gateway = await buildGateway({
      producer: down,
      tokens,
      maxItems: 5,
      bodyLimitBytes: 64 * 1024,
      logger,
      checks: { kafka: async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1')) },
    });
    const response = await gateway.inject({
      method: 'POST',
      url: '/v1/occurrences',
      payload: sentry,
      headers: { authorization: 'Bearer secret' },
    });
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    const ready = await gateway.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().checks.kafka).toEqual({
      status: 'down',
      error: 'connect ECONNREFUSED 127.0.0.1:1',
    });
    await gateway.close();
  });
});

describe('documents and probes', () => {
  it('serves an OpenAPI document built from the topic schemas', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(Object.keys(doc.paths)).toEqual(['/v1/occurrences', '/v1/status-changes']);
    expect(doc.components.schemas.Occurrence.required).toEqual(
      expect.arrayContaining(['id', 'project_id', 'fingerprint']),
    );
    expect(doc.paths['/v1/occurrences'].post.responses).toHaveProperty('503');
  });

  it('serves /healthz, /readyz and /metrics', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({
      status: 'ready',
      checks: { kafka: { status: 'ok' } },
    });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(
      /shoal_ingest_requests_total\{route="\/v1\/occurrences",status="202"\} \d+/,
    );
  });
});
