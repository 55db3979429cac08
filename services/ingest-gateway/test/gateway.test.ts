import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  idempotencyKeySchema,
  idempotentItemId,
  loadSchema,
  schemasDir,
  statusChangeContentId,
  withAdmin as withKafkaAdmin,
  type StatusChange,
} from '@shoal/contracts';
import { createLogger } from '@shoal/observability';
import { createProducer, type ShoalProducer } from '@shoal/producer';
import {
  connections,
  isolatedTopics,
  kafka,
  privateBroker,
  uniqueName,
  waitFor,
  type IsolatedTopics,
} from '@shoal/testing';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway } from '../src/app.js';
import { readinessChecks } from '../src/checks.js';

const example = (name: string) =>
  JSON.parse(fs.readFileSync(path.join(schemasDir, 'examples', name), 'utf8')) as Record<
    string,
    unknown
  >;
const sentry = example('occurrence.sentry-monitor-failure.json');
const shoal = example('occurrence.shoal-extended.json');
const resolve = example('status-change.sentry-resolve.json');
const ignore = example('status-change.sentry-ignore.json'); // neither id nor update_date
const { id: _resolveId, ...dated } = resolve; // no id, but update_date

let ns: IsolatedTopics;
let producer: ShoalProducer;
let app: FastifyInstance;
const readiness = readinessChecks(
  { brokers: connections().KAFKA_BROKERS },
  { url: connections().SCHEMA_REGISTRY_URL },
);
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
    checks: readiness.checks,
  });
});
afterAll(async () => {
  await app.close();
  await readiness.close();
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

const onTopic = async (topic: string, brokers = connections().KAFKA_BROKERS) =>
  (await withKafkaAdmin(brokers, (admin) => admin.fetchTopicOffsets(topic))).reduce(
    (n, p) => n + Number(p.high),
    0,
  );

/** The `shoal.message-id` header of every record on the topic. */
async function messageIdsOn(topic: string): Promise<string[]> {
  const expected = await onTopic(topic);
  const consumer = kafka().consumer({ groupId: uniqueName('read-') });
  const ids: string[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        ids.push(String(message.headers?.['shoal.message-id'] ?? ''));
      },
    });
    await waitFor(`${expected} records on ${topic}`, async () => ids.length >= expected);
  } finally {
    await consumer.disconnect();
  }
  return ids;
}

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
  it('publishes a status change, keyed like its occurrences; one with an id keeps it', async () => {
    const response = await post('/v1/status-changes', resolve);
    expect(response.statusCode).toBe(202);
    expect(response.json().ids).toEqual([resolve.id]);
    const bad = await post('/v1/status-changes', { ...resolve, new_status: 9 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().problems[0]).toMatchObject({ index: 0, path: '/new_status' });
  });
});

describe('status-change ids', () => {
  const count = (ids: string[], id: string) =>
    ids.filter((m) => m === `status-change:${id}`).length;

  it('one with update_date gets its id from its content: posted twice, the same id, so consumers apply it once', async () => {
    const change = { ...dated, update_date: '2026-11-30T01:00:00+00:00' };
    const first = await post('/v1/status-changes', change);
    // the same content in another key order, through the route Sentry uses
    const reordered = Object.fromEntries(Object.entries(change).reverse());
    const second = await post('/v1/occurrences', reordered);
    expect([first.statusCode, second.statusCode]).toEqual([202, 202]);
    const [id] = first.json().ids;
    expect(second.json().ids).toEqual([id]);
    const later = await post('/v1/status-changes', {
      ...change,
      update_date: '2026-11-30T01:00:01+00:00',
    });
    expect(later.json().ids[0]).not.toBe(id);
    expect(count(await messageIdsOn(ns.topics.statusChanges), id)).toBe(2);
  });

  it('one with neither id nor update_date gets a fresh id each time: both are applied (the same effect)', async () => {
    const change = { ...ignore, fingerprint: ['fresh-ids'] };
    const ids = [
      (await post('/v1/status-changes', change)).json().ids[0],
      (await post('/v1/status-changes', change)).json().ids[0],
    ];
    expect(ids[0]).not.toBe(ids[1]);
    const onTopic = await messageIdsOn(ns.topics.statusChanges);
    expect(ids.map((id) => count(onTopic, id))).toEqual([1, 1]);
  });

  it('a retried request with the same Idempotency-Key gives each item the id it had (`<key>:<index>`)', async () => {
    const key = `retry-${randomUUID()}`;
    const items = [
      { ...ignore, fingerprint: ['keyed-0'] },
      { ...ignore, fingerprint: ['keyed-1'] },
      { ...dated, update_date: '2026-11-30T02:00:00+00:00' },
    ];
    const first = await post('/v1/status-changes', items, { 'idempotency-key': key });
    const retry = await post('/v1/status-changes', items, { 'idempotency-key': key });
    expect([first.statusCode, retry.statusCode]).toEqual([202, 202]);
    const ids: string[] = first.json().ids;
    expect(retry.json().ids).toEqual(ids);
    expect(ids[0]).toBe(idempotentItemId(key, 0));
    expect(ids[1]).toBe(idempotentItemId(key, 1));
    // a dated change keeps its content id; an occurrence its own id
    expect(ids[2]).toBe(statusChangeContentId(items[2] as StatusChange));
    const withOccurrence = await post('/v1/occurrences', sentry, { 'idempotency-key': key });
    expect(withOccurrence.json().ids).toEqual([sentry.id]);
    const onTopic = await messageIdsOn(ns.topics.statusChanges);
    expect(ids.map((id) => count(onTopic, id))).toEqual([2, 2, 2]);
  });

  it('refuses a malformed Idempotency-Key (400 naming the header), and publishes nothing', async () => {
    const before = await onTopic(ns.topics.statusChanges);
    for (const key of ['short', `${'k'.repeat(20)} with spaces`, 'k'.repeat(129)]) {
      const response = await post('/v1/status-changes', ignore, { 'idempotency-key': key });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({
        error: 'invalid_header',
        problems: [{ path: '/idempotency-key' }],
      });
    }
    expect(await onTopic(ns.topics.statusChanges)).toBe(before);
  });
});

describe('when the broker is down', () => {
  it('/readyz names kafka as down and POST answers 503 with Retry-After; both recover when it is back', async () => {
    const broker = await privateBroker();
    const own = await isolatedTopics({ brokers: broker.brokers });
    const ownProducer = createProducer({
      brokers: broker.brokers,
      registryUrl: connections().SCHEMA_REGISTRY_URL,
      namespace: own.namespace,
      retry: { retries: 1, initialRetryTime: 100 },
    });
    const readiness = readinessChecks(
      { brokers: broker.brokers },
      { url: connections().SCHEMA_REGISTRY_URL },
    );
    const gateway = await buildGateway({
      producer: ownProducer,
      tokens,
      maxItems: 5,
      bodyLimitBytes: 64 * 1024,
      logger,
      checks: readiness.checks,
    });
    const ingest = () =>
      gateway.inject({
        method: 'POST',
        url: '/v1/occurrences',
        payload: sentry,
        headers: { authorization: 'Bearer secret' },
      });
    const ready = async () => (await gateway.inject({ method: 'GET', url: '/readyz' })).json();
    try {
      // a broker just started may take a moment to lead the new topic's partitions (longer on a busy
      // machine than the producer's one retry here)
      await waitFor('a first occurrence accepted by the fresh broker', async () => {
        return (await ingest()).statusCode === 202;
      });
      expect(await ready()).toEqual({
        status: 'ready',
        checks: { kafka: { status: 'ok' }, registry: { status: 'ok' } },
        error_tracker: { status: 'not configured', detail: expect.any(String) },
      });

      broker.stop();
      const refused = await ingest();
      expect(refused.statusCode).toBe(503);
      expect(refused.headers['retry-after']).toBe('5');
      expect(refused.json().error).toBe('unavailable');
      const down = await ready();
      expect(down.status).toBe('not_ready');
      expect(down.checks.kafka).toEqual({ status: 'down', error: expect.any(String) });
      expect(down.checks.registry).toEqual({ status: 'ok' });

      broker.start();
      await waitFor('/readyz ready again', async () => (await ready()).status === 'ready', 120_000);
      await waitFor(
        'a POST accepted again',
        async () => (await ingest()).statusCode === 202,
        120_000,
      );
      // the restarted broker may still be electing leaders of the topic's other partitions, whose
      // offsets it then refuses to list ("not the leader"): read them once it answers for all
      let records = 0;
      await waitFor('the topic readable again', async () => {
        records = await onTopic(own.topics.occurrences, broker.brokers).catch(() => -1);
        return records >= 0;
      });
      expect(records).toBeGreaterThanOrEqual(2);
    } finally {
      await gateway.close();
      await ownProducer.close().catch(() => undefined);
      await readiness.close();
      broker.remove();
    }
  }, 300_000);
});

describe('documents and probes', () => {
  it('serves an OpenAPI document built from the route schemas, its schemas those of schemas/', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(['/v1/occurrences', '/v1/status-changes']);
    for (const [name, key] of [
      ['Occurrence', 'occurrences'],
      ['StatusChange', 'statusChanges'],
    ] as const) {
      const component = doc.components.schemas[name];
      expect(component.required).toEqual(loadSchema(key).required);
      expect(Object.keys(component.properties)).toEqual(
        Object.keys(loadSchema(key).properties as object),
      );
    }
    const route = doc.paths['/v1/status-changes'].post;
    expect(route.requestBody.content['application/json'].schema.oneOf).toEqual([
      { $ref: '#/components/schemas/StatusChange' },
      {
        type: 'array',
        minItems: 1,
        maxItems: 5,
        items: { $ref: '#/components/schemas/StatusChange' },
      },
    ]);
    expect(route.parameters).toEqual([
      expect.objectContaining({
        in: 'header',
        name: 'idempotency-key',
        schema: expect.objectContaining({ pattern: idempotencyKeySchema.pattern }),
      }),
    ]);
    expect(Object.keys(route.responses)).toEqual(
      expect.arrayContaining(['202', '400', '401', '403', '413', '415', '503']),
    );
    expect(route.responses['503'].headers).toHaveProperty('retry-after');
  });

  it('serves /healthz, /readyz and /metrics', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({
      status: 'ready',
      checks: { kafka: { status: 'ok' }, registry: { status: 'ok' } },
      error_tracker: { status: 'not configured', detail: expect.any(String) },
    });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(
      /shoal_ingest_requests_total\{route="\/v1\/occurrences",status="202"\} \d+/,
    );
  });
});
