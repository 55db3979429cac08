import { randomUUID } from 'node:crypto';
import type { GroupEvent } from '@shoal/contracts';
import { createPool } from '@shoal/db';
import {
  freePort,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  repoRoot,
  spawnEntryPoint,
  waitFor,
} from '@shoal/testing';
import { afterAll, expect, it } from 'vitest';
import { runLifecycleDemo } from '../src/lifecycle-demo.js';

// The lifecycle part of `npm start -- --demo` (src/lifecycle-demo.ts) against a lifecycle process
// of its own (real stack, a topic namespace and database of its own), not the shared services.

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

it('an agent works the most severe issue to resolved, a second agent is refused with 409; history and events in order', async () => {
  const ns = await isolatedTopics();
  const db = await isolatedDatabase({ migrate: false });
  cleanups.push(
    () => ns.drop(),
    () => db.drop(),
  );
  const apiPort = await freePort();
  const lifecycle = spawnEntryPoint(
    `${repoRoot}services/lifecycle/src/main.ts`,
    {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_API_PORT: String(apiPort),
      SHOAL_API_TOKENS: 'agent-a:tok-a:read+claim+write,agent-b:tok-b:read+claim+write',
      SHOAL_SESSION_TIMEOUT_MS: '6000',
    },
    '"agent API listening"',
  );
  cleanups.push(async () => {
    if (lifecycle.child.exitCode === null) lifecycle.child.kill('SIGTERM');
    await lifecycle.exited;
  });
  await lifecycle.ready;

  const groups: [number, GroupEvent['level']][] = [
    [8101, 'warning'],
    [8102, 'fatal'],
    [8103, 'error'],
  ];
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  await producer.send({
    topic: ns.topics.groupEvents,
    acks: -1,
    messages: groups.map(([id, level]) => ({
      key: String(id),
      value: JSON.stringify({
        event_id: randomUUID(),
        event_type: 'group_created',
        occurred_at: new Date().toISOString(),
        group_id: id,
        project_id: 7,
        level,
        title: `${level} in group ${id}`,
        status: 'unresolved',
      } satisfies GroupEvent),
    })),
  });
  await producer.disconnect();

  const pool = createPool(db.url, { applicationName: 'demo-test', schema: 'lifecycle' });
  cleanups.push(() => pool.end());
  // the demo works the most severe issue open when it starts: all three, not the first decided
  await waitFor(
    'the three issues opened',
    async () => (await pool.query('SELECT 1 FROM issues')).rowCount === groups.length,
  );
  const lines: string[] = [];
  const { history, events } = await runLifecycleDemo({
    apiUrl: `http://127.0.0.1:${apiPort}`,
    agents: [
      { actor: 'agent-a', token: 'tok-a' },
      { actor: 'agent-b', token: 'tok-b' },
    ],
    pool,
    lifecycleTopic: ns.topics.lifecycle,
    release: 'shop@2.0.1',
    log: (line) => lines.push(line),
  });
  expect(lines[0]).toContain('issue 8102 (critical)');
  expect(lines.join('\n')).toContain("agent-b's claim: 409 claim_conflict (held by agent-a)");
  expect(history.map((h) => [h.event, h.to])).toEqual([
    ['created', 'new'],
    ['claimed', 'new'],
    ['claim_renewed', 'new'],
    ['transitioned', 'in_progress'],
    ['note_added', 'in_progress'],
    ['event_attached', 'in_progress'],
    ['transitioned', 'awaiting_verification'],
    ['resolved', 'resolved'],
  ]);
  expect(events.map((e) => [Number(e.version), e.event])).toEqual(
    history.map((h) => [h.version, h.event]),
  );
}, 180_000);
