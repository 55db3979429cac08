import { randomUUID } from 'node:crypto';
import type { GroupEvent } from '@shoal/contracts';
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
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, expect, it } from 'vitest';

// Issue 16's must-show, through lifecycle's main: agents' commands go through the API while the
// process is SIGKILLed five times and restarted. Every command (retried with its Idempotency-Key
// when the process was gone) is decided once and readable at /v1/commands/{id}; on
// shoal.lifecycle.v1 every issue's versions are 1…N in order, once per event id (a re-publish after
// a kill repeats an event with its id, never a version under another id).

const main = `${repoRoot}services/lifecycle/src/main.ts`;
const ISSUES = Array.from({ length: 12 }, (_, i) => 9201 + i);
/** Notes each issue gets at least; agents keep sending until the last restart. */
const MIN_NOTES = 5;
const KILLS = 5;

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

it('kill -9 five times under agent traffic: each command applied once, every issue 1…N in order on shoal.lifecycle.v1', async () => {
  const ns = await isolatedTopics();
  const db = await isolatedDatabase({ migrate: false });
  cleanups.push(
    () => ns.drop(),
    () => db.drop(),
  );
  const [opsPort, apiPort] = [await freePort(), await freePort()];
  const env = {
    DATABASE_URL: db.url,
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    SHOAL_OPS_PORT: String(opsPort),
    SHOAL_API_PORT: String(apiPort),
    SHOAL_API_TOKENS: 'agent-1:tok-kill:read+claim+write',
    SHOAL_SESSION_TIMEOUT_MS: '6000',
    // Kafka groups of its own: another run of lifecycle at once (a test, a bench) in the default
    // `shoal.lifecycle.*` groups would be given some of this run's partitions, and never read them
    SHOAL_CONSUMER_GROUP: uniqueName('lifecycle-'),
  };
  let running: RunningEntryPoint;
  const start = async () => {
    running = spawnEntryPoint(main, env, '"agent API listening"');
    await running.ready;
  };
  cleanups.push(async () => {
    if (running.child.exitCode === null) running.child.kill('SIGKILL');
    await running.exited;
  });
  await start();

  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  await producer.send({
    topic: ns.topics.groupEvents,
    acks: -1,
    messages: ISSUES.map((id) => {
      const event: GroupEvent = {
        event_id: randomUUID(),
        event_type: 'group_created',
        occurred_at: new Date().toISOString(),
        group_id: id,
        project_id: 1,
        level: 'error',
        title: `issue ${id}`,
        status: 'unresolved',
      };
      return {
        key: String(id),
        value: JSON.stringify(event),
        headers: { [HEADER.messageId]: event.event_id },
      };
    }),
  });
  await producer.disconnect();

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${apiPort}${path}`, {
      ...init,
      headers: {
        authorization: 'Bearer tok-kill',
        ...(init.body ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
      signal: AbortSignal.timeout(15_000),
    });
  for (const id of ISSUES)
    await waitFor(`issue ${id} opened`, async () => (await api(`/v1/issues/${id}`)).ok, 60_000);

  /** Sends a command until it is decided, retrying with its Idempotency-Key while the process is gone. */
  const decided = new Map<string, string>();
  let retried = 0;
  async function command(id: number, path: string, body: object): Promise<void> {
    const key = randomUUID();
    for (;;) {
      try {
        const reply = await api(path, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'idempotency-key': key, prefer: 'wait=5' },
        });
        if (reply.status === 200) {
          decided.set(key, ((await reply.json()) as { outcome: string }).outcome);
          return;
        }
        if (reply.status === 202) {
          await waitFor(`command ${key} decided`, async () => {
            const outcome = await api(`/v1/commands/${key}`).catch(() => undefined);
            if (outcome?.status !== 200) return false;
            decided.set(key, ((await outcome.json()) as { outcome: string }).outcome);
            return true;
          });
          return;
        }
        if (reply.status !== 503)
          throw new Error(`issue ${id}: ${reply.status} ${await reply.text()}`);
      } catch (error) {
        if ((error as Error).message.startsWith(`issue ${id}:`)) throw error;
        // the process is down (connection refused or reset): retry the same key
        retried++;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  let killed = false;
  const sent = new Map<number, number>();
  const traffic = Promise.all(
    ISSUES.map(async (id) => {
      await command(id, `/v1/issues/${id}/transitions`, { to_status: 'triaged' });
      let notes = 0;
      while (!killed || notes < MIN_NOTES) {
        await command(id, `/v1/issues/${id}/notes`, { note: `note ${++notes}` });
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
      sent.set(id, 1 + notes);
    }),
  );
  for (let kill = 0; kill < KILLS; kill++) {
    await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2500));
    running!.child.kill('SIGKILL');
    await running!.exited;
    await start();
  }
  killed = true;
  await traffic;
  const total = [...sent.values()].reduce((a, b) => a + b, 0);
  expect(decided.size).toBe(total);
  expect(retried, 'requests the kills interrupted, retried').toBeGreaterThan(0);
  expect([...decided.values()].every((o) => o === 'applied')).toBe(true);
  expect(running!.output.join('\n')).not.toContain('"level":60');

  // every command once: one outcome each (readable at /v1/commands/{id}), one history row each
  const { rows: outcomes } = await db.pool.query<{ n: number; distinct: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT command_id)::int AS distinct
       FROM lifecycle.issue_history WHERE origin = 'agent'`,
  );
  expect(outcomes[0]).toEqual({ n: decided.size, distinct: decided.size });
  for (const key of [...decided.keys()].slice(0, 5))
    expect((await api(`/v1/commands/${key}`)).status).toBe(200);

  // shoal.lifecycle.v1: per issue, versions 1…N in order, each version under one event id
  await waitFor('the outbox published', async () => {
    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM lifecycle.outbox WHERE published_at IS NULL',
    );
    return rows[0]!.n === 0;
  });
  const records = await readAll(ns.topics.lifecycle);
  const byIssue = new Map<string, { eventId: string; version: number }[]>();
  for (const record of records) {
    const event = JSON.parse(record.value!.subarray(5).toString()) as {
      event_id: string;
      version: number;
    };
    byIssue.set(record.key!, [
      ...(byIssue.get(record.key!) ?? []),
      { eventId: event.event_id, version: event.version },
    ]);
  }
  expect([...byIssue.keys()].sort()).toEqual(ISSUES.map(String).sort());
  for (const [issue, events] of byIssue) {
    const seen = new Map<string, number>();
    const firsts = events.filter((e) => {
      if (seen.has(e.eventId)) {
        expect(seen.get(e.eventId), `issue ${issue}: event ${e.eventId} again`).toBe(e.version);
        return false;
      }
      seen.set(e.eventId, e.version);
      return true;
    });
    expect(
      firsts.map((e) => e.version),
      `issue ${issue}`,
    ).toEqual(Array.from({ length: 1 + sent.get(Number(issue))! }, (_, i) => i + 1));
  }
}, 600_000);
