import { randomUUID } from 'node:crypto';
import type { EntityChange, GroupEvent } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import {
  freePort,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  readAll,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
} from '@shoal/testing';
import { afterAll, expect, it } from 'vitest';

// Lifecycle's main as one process (src/service.ts) against the real stack: grouping's events go in
// through intake, decide makes the issue, the agent API serves it, an agent claims it; a deleted
// group's issue is gone from the API; both groups ready on the ops port; SIGTERM exits 0.

const main = `${repoRoot}services/lifecycle/src/main.ts`;
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function send(topic: string, key: string, values: { event_id: string }[]): Promise<void> {
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: values.map((v) => ({
        key,
        value: JSON.stringify(v),
        headers: { [HEADER.messageId]: v.event_id },
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

it('intake, decide, the sweeper and the agent API in one process: a group becomes an issue an agent claims; its deletion hides it; SIGTERM exits 0', async () => {
  const ns = await isolatedTopics();
  const db = await isolatedDatabase({ migrate: false });
  cleanups.push(
    () => ns.drop(),
    () => db.drop(),
  );
  const [opsPort, apiPort] = [await freePort(), await freePort()];
  const service = spawnEntryPoint(
    main,
    {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_OPS_PORT: String(opsPort),
      SHOAL_API_PORT: String(apiPort),
      SHOAL_API_TOKENS: 'agent-1:tok-agent-1:read+claim+write',
      SHOAL_SESSION_TIMEOUT_MS: '6000',
      // Kafka groups of its own: another run of lifecycle at once (a test, a bench) in the default
      // `shoal.lifecycle.*` groups would be given some of this run's partitions, and never read them
      SHOAL_CONSUMER_GROUP: uniqueName('lifecycle-'),
    },
    '"agent API listening"',
  );
  cleanups.push(async () => {
    if (service.child.exitCode === null) service.child.kill('SIGKILL');
    await service.exited;
  });
  await service.ready;
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${apiPort}${path}`, {
      ...init,
      headers: {
        authorization: 'Bearer tok-agent-1',
        ...(init.body ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
    });

  const created: GroupEvent = {
    event_id: randomUUID(),
    event_type: 'group_created',
    occurred_at: new Date().toISOString(),
    group_id: 9001,
    project_id: 1,
    short_id: 'P-9001',
    primary_fingerprint: 'fp-9001',
    level: 'fatal',
    title: 'TypeError: x is undefined',
    times_seen: 1,
    status: 'unresolved',
  };
  await send(ns.topics.groupEvents, '9001', [created]);
  await waitFor('the issue to be served', async () => (await api('/v1/issues/9001')).ok, 60_000);
  const { issue } = (await (await api('/v1/issues/9001')).json()) as { issue: unknown };
  expect(issue).toMatchObject({ issue_id: 9001, status: 'new', severity: 'critical', version: 1 });

  const claim = await api('/v1/issues/9001/claim', {
    method: 'POST',
    body: JSON.stringify({ lease_seconds: 60 }),
  });
  expect(claim.status).toBe(200);
  expect(((await claim.json()) as { claim_token?: string }).claim_token).toBeTruthy();

  const ready = (await (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).json()) as {
    checks: Record<string, unknown>;
  };
  expect(Object.keys(ready.checks)).toEqual(
    expect.arrayContaining(['consumer:decide', 'consumer:intake', 'postgres', 'kafka']),
  );

  const deleted: EntityChange = {
    event_id: randomUUID(),
    entity_kind: 'group',
    entity_id: '9001',
    change: 'deleted',
    project_id: 1,
    occurred_at: new Date().toISOString(),
  };
  await send(ns.topics.entityChanges, 'group:9001', [deleted]);
  await waitFor(
    'the deleted issue to be gone',
    async () => (await api('/v1/issues/9001')).status === 404,
    60_000,
  );
  // the lifecycle events agents read: created, claimed, deleted, in order
  await waitFor('three lifecycle events', async () => {
    const events = await readAll(ns.topics.lifecycle);
    return events.length === 3;
  });
  const types = (await readAll(ns.topics.lifecycle)).map(
    (r) => (JSON.parse(r.value!.subarray(5).toString()) as { event_type: string }).event_type,
  );
  expect(types).toEqual(['created', 'claimed', 'deleted']);

  service.child.kill('SIGTERM');
  expect(await service.exited).toBe(0);
}, 180_000);
