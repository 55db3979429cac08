import path from 'node:path';
import { Codec, createRegistry, type GroupEvent } from '@shoal/contracts';
import {
  connections,
  freePort,
  kafka,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
} from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { groupingTestKit, occurrence } from './kit.js';

const { fresh, start, cleanup } = groupingTestKit();

const gatewayMain = path.join(repoRoot, 'services', 'ingest-gateway', 'src', 'main.ts');

/** Every group event on the topic as it arrives, decoded; stopped after the file's tests. */
async function collectGroupEvents(topic: string, codec: Codec): Promise<GroupEvent[]> {
  const events: GroupEvent[] = [];
  const consumer = kafka().consumer({ groupId: uniqueName('read-') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      events.push(await codec.decode('groupEvents', message.value));
    },
  });
  cleanup(() => consumer.disconnect());
  return events;
}

describe('status changes through the gateway, applied by grouping', () => {
  it('a dated change sent twice is applied once; an undated one twice (same effect); an Idempotency-Key retry once', async () => {
    const { ns, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    const port = await freePort();
    const gateway = spawnEntryPoint(
      gatewayMain,
      {
        SHOAL_TOPIC_NAMESPACE: ns.namespace,
        SHOAL_GATEWAY_PORT: String(port),
        SHOAL_INGEST_TOKENS: 'ids-token',
      },
      'Server listening',
    );
    cleanup(async () => {
      if (gateway.child.exitCode === null) gateway.child.kill('SIGTERM');
      await gateway.exited;
    });
    await gateway.ready;
    const post = async (route: string, body: unknown, headers: Record<string, string> = {}) => {
      const response = await fetch(`http://127.0.0.1:${port}${route}`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer ids-token',
          'content-type': 'application/json',
          ...headers,
        },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(202);
      return ((await response.json()) as { ids: string[] }).ids[0]!;
    };
    const events = await collectGroupEvents(
      ns.topics.groupEvents,
      new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics),
    );
    const statusChanges = () =>
      events.flatMap((e) =>
        e.event_type === 'status_changed' ? [`${e.previous_status}→${e.status}`] : [],
      );

    await post('/v1/occurrences', occurrence(0, 'ids'));
    await waitFor('the group', async () => events.some((e) => e.event_type === 'group_created'));

    const change = { project_id: 1, fingerprint: ['ids'], payload_type: 'status_change' };
    const dated = { ...change, new_status: 1, update_date: '2026-11-30T01:00:00+00:00' };
    const datedIds = [
      await post('/v1/occurrences', dated),
      await post('/v1/status-changes', dated),
    ];
    const undated = { ...change, new_status: 2 };
    const undatedIds = [
      await post('/v1/status-changes', undated),
      await post('/v1/status-changes', undated),
    ];
    const key = { 'idempotency-key': `unresolve-${uniqueName('')}-retry` };
    const unresolve = { ...change, new_status: 0 };
    const keyedIds = [
      await post('/v1/status-changes', unresolve, key),
      await post('/v1/status-changes', unresolve, key),
    ];
    // last, on the same partition: once it is applied, everything before it is
    await post('/v1/status-changes', { ...dated, update_date: '2026-11-30T02:00:00+00:00' });

    expect(new Set(datedIds).size).toBe(1);
    expect(new Set(undatedIds).size).toBe(2);
    expect(new Set(keyedIds).size).toBe(1);
    await waitFor('the last change applied', async () => statusChanges().length >= 5, 60_000);
    expect(statusChanges()).toEqual([
      'unresolved→resolved', // dated, sent twice: applied once
      'resolved→ignored', // undated, sent twice: applied twice, the same effect
      'ignored→ignored',
      'ignored→unresolved', // Idempotency-Key retried: applied once
      'unresolved→resolved', // the last one
    ]);
  });
});
