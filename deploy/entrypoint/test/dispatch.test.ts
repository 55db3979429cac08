import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Occurrence } from '@shoal/contracts';
import { planTopics, topicNames } from '@shoal/contracts';
import { createProducer } from '@shoal/producer';
import {
  connections,
  freePort,
  isolatedDatabase,
  isolatedTopics,
  runEntryPoint,
  runEntryPointAsync,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  withAdmin,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceNames, services } from '../src/services.js';

const dispatcher = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.ts');
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** Stops a child with SIGTERM after the file's tests if it still runs. */
function stopLater(running: RunningEntryPoint) {
  cleanups.push(async () => {
    if (running.child.exitCode === null) running.child.kill('SIGTERM');
    await running.exited;
  });
}

/** The services setup migrates: every consumer, each into the schema named after it. */
const consumerSchemas = serviceNames.filter((name) => services[name]!.migrationsDir);

let counter = 0;
const occurrence = (fingerprint: string): Occurrence => ({
  id: `00000000-0000-4000-8000-${(++counter).toString(16).padStart(12, '0')}`,
  project_id: 1,
  fingerprint: [fingerprint],
  issue_title: `Error in ${fingerprint}`,
  type: 1,
  detection_time: 1764000000 + counter,
  event_id: `${counter}`.padStart(32, '0'),
});

describe('the image dispatcher', () => {
  it('refuses an unknown service, naming the ones it knows (exit 2), and prints its usage on --help', () => {
    const unknown = runEntryPoint(dispatcher, ['billing']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain(
      `unknown service "billing"; known: ${serviceNames.join(', ')}`,
    );
    const help = runEntryPoint(dispatcher, ['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('setup');
    expect(runEntryPoint(dispatcher, []).status).toBe(2);
  });

  it('check-config parses a service environment as the service would: a bad variable is named, exit 78', () => {
    const bad = runEntryPoint(dispatcher, ['check-config', 'grouping'], { SHOAL_OPS_PORT: 'x' });
    expect(bad.status).toBe(78);
    expect(bad.stderr).toContain('SHOAL_OPS_PORT: expected a TCP port');
    // every problem at once, from each parser (the gateway's own, Kafka's), no secret shown
    const missing = runEntryPoint(dispatcher, ['check-config', 'ingest-gateway'], {
      SHOAL_INGEST_TOKENS: '',
      KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
      KAFKA_SASL_USERNAME: 'shoal',
      KAFKA_SASL_PASSWORD: 'hunter2hunter2',
    });
    expect(missing.status).toBe(78);
    expect(missing.stderr).toContain('SHOAL_INGEST_TOKENS: expected a comma-separated list');
    expect(missing.stderr).toContain('KAFKA_SASL_MECHANISM: one of PLAIN, SCRAM-SHA-256');
    expect(missing.stderr).not.toContain('hunter2');
    // a consumer's own parser beside the runtime's: both named at once
    const dedup = runEntryPoint(dispatcher, ['check-config', 'dedup'], {
      SHOAL_DEDUP_WINDOW_SECONDS: 'a day',
      SHOAL_OPS_PORT: 'x',
    });
    expect(dedup.status).toBe(78);
    expect(dedup.stderr).toContain(
      'SHOAL_DEDUP_WINDOW_SECONDS: whole seconds, 0 or more (got "a day")',
    );
    expect(dedup.stderr).toContain('SHOAL_OPS_PORT: expected a TCP port');
    const ok = runEntryPoint(dispatcher, ['check-config', 'grouping'], { SHOAL_OPS_PORT: '9464' });
    expect(ok.stdout).toContain(
      'grouping: configuration ok; /healthz /readyz /metrics on port 9464',
    );
    expect(ok.status).toBe(0);
  });

  it('setup migrates every service, creates the topics and registers the schemas, idempotently; a bad partition spec is named (78)', async () => {
    const db = await isolatedDatabase({ migrate: false });
    cleanups.push(() => db.drop());
    const namespace = `${uniqueName('t')}.`;
    cleanups.push(() =>
      withAdmin((admin) =>
        admin.deleteTopics({ topics: planTopics(topicNames(namespace)).map((p) => p.topic) }),
      ),
    );
    const env = {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: namespace,
      SHOAL_TOPIC_PARTITIONS: 'occurrences=2',
    };
    const bad = runEntryPoint(dispatcher, ['setup'], { ...env, SHOAL_TOPIC_PARTITIONS: 'nope=2' });
    expect(bad.status).toBe(78);
    expect(bad.stderr).toContain('SHOAL_TOPIC_PARTITIONS: --partitions: "nope=2" is not');

    const first = runEntryPoint(dispatcher, ['setup'], env);
    for (const schema of consumerSchemas)
      expect(first.stderr).toMatch(new RegExp(`schema ${schema}: applied \\d`));
    expect(first.status).toBe(0);
    const topics = planTopics(topicNames(namespace));
    expect(first.stderr).toContain(`${topics.length} topics (${topics.length} created now)`);
    const occurrences = await withAdmin((admin) =>
      admin.fetchTopicMetadata({ topics: [topicNames(namespace).occurrences] }),
    );
    expect(occurrences.topics[0]!.partitions).toHaveLength(2);
    const tables = await db.pool.query(
      "SELECT 1 FROM information_schema.tables WHERE table_schema = 'grouping' AND table_name IN ('groups', 'consumer_offsets')",
    );
    expect(tables.rowCount).toBe(2);
    // each consumer's own first table beside the runtime's, in its own schema
    const owned = await db.pool.query<{ table_schema: string }>(
      `SELECT table_schema FROM information_schema.tables
        WHERE (table_schema, table_name) IN (('regression', 'regressions'), ('dedup', 'incidents'))`,
    );
    expect(owned.rows.map((r) => r.table_schema).sort()).toEqual(['dedup', 'regression']);

    const again = runEntryPoint(dispatcher, ['setup'], env);
    expect(again.status).toBe(0);
    for (const schema of consumerSchemas)
      expect(again.stderr).toContain(`schema ${schema}: up to date`);
    expect(again.stderr).toContain(`${topics.length} topics (0 created now)`);
  });

  it('setup takes TLS from the configuration: against the local servers, which speak none, TLS is tried and refused', async () => {
    const db = await isolatedDatabase({ migrate: false });
    cleanups.push(() => db.drop());
    const namespace = `${uniqueName('t')}.`;
    const postgres = runEntryPoint(dispatcher, ['setup'], {
      DATABASE_URL: `${db.url}?sslmode=require`,
      SHOAL_TOPIC_NAMESPACE: namespace,
    });
    expect(postgres.status).toBe(1);
    expect(postgres.stderr).toContain('setup failed: The server does not support SSL connections');
    const kafka = runEntryPoint(dispatcher, ['setup'], {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: namespace,
      KAFKA_SECURITY_PROTOCOL: 'SSL',
    });
    expect(kafka.status).toBe(1);
    expect(kafka.stderr).toContain('before secure TLS connection was established');
    const topics = await withAdmin((admin) => admin.listTopics());
    expect(topics.filter((t) => t.startsWith(namespace))).toEqual([]);
  });

  it('ingest-gateway by name: serves /healthz and /readyz, SIGTERM exits 0', async () => {
    const port = await freePort();
    const gateway = spawnEntryPoint(
      dispatcher,
      { SHOAL_GATEWAY_PORT: String(port), SHOAL_INGEST_TOKENS: 'dispatch-token' },
      'Server listening',
      ['ingest-gateway'],
    );
    stopLater(gateway);
    await gateway.ready;
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    await waitFor('/readyz 200', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok);
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  });

  // the three side by side: each on topics, a database and ports of its own
  it.concurrent.each(['regression', 'dedup', 'lifecycle'])(
    '%s by name, after setup: its own migrations at start find nothing to apply; /readyz 200 (lifecycle: its agent API answers too), SIGTERM exits 0',
    async (name) => {
      const ns = await isolatedTopics();
      const db = await isolatedDatabase({ migrate: false });
      cleanups.push(
        () => ns.drop(),
        () => db.drop(),
      );
      const env = { DATABASE_URL: db.url, SHOAL_TOPIC_NAMESPACE: ns.namespace };
      expect((await runEntryPointAsync(dispatcher, ['setup'], env)).status).toBe(0);
      const migrated = async () =>
        (
          await db.pool.query<{ name: string; run_on: Date }>(
            `SELECT name, run_on FROM ${name}.pgmigrations ORDER BY id`,
          )
        ).rows;
      const bySetup = await migrated();
      expect(bySetup.length).toBeGreaterThan(1);

      const opsPort = await freePort();
      const apiPort = await freePort();
      const api = {
        SHOAL_API_PORT: String(apiPort),
        SHOAL_API_TOKENS: 'dispatch-agent:dispatch-token:read',
      };
      const service = spawnEntryPoint(
        dispatcher,
        { ...env, SHOAL_OPS_PORT: String(opsPort), ...(name === 'lifecycle' && api) },
        '"consumer running"',
        [name],
      );
      stopLater(service);
      await service.ready;
      await waitFor(
        '/readyz 200',
        async () => (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).ok,
      );
      expect(await migrated()).toEqual(bySetup);
      if (name === 'lifecycle') {
        const issues = await fetch(`http://127.0.0.1:${apiPort}/v1/issues`, {
          headers: { authorization: 'Bearer dispatch-token' },
        });
        expect(issues.status).toBe(200);
      }
      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
    },
    180_000, // three services starting at once on a loaded machine
  );

  it('grouping by name: SIGTERM while a batch waits inside its transaction lets that batch commit, then exits 0', async () => {
    const ns = await isolatedTopics({ partitions: { occurrences: 1 } });
    const db = await isolatedDatabase({ migrate: false });
    const producer = createProducer({
      brokers: connections().KAFKA_BROKERS,
      registryUrl: connections().SCHEMA_REGISTRY_URL,
      namespace: ns.namespace,
    });
    cleanups.push(
      () => ns.drop(),
      () => db.drop(),
      () => producer.close(),
    );
    const opsPort = await freePort();
    const grouping = spawnEntryPoint(
      dispatcher,
      {
        DATABASE_URL: db.url,
        SHOAL_TOPIC_NAMESPACE: ns.namespace,
        SHOAL_OPS_PORT: String(opsPort),
        SHOAL_SESSION_TIMEOUT_MS: '6000',
      },
      '"consumer running"',
      ['grouping'],
    );
    stopLater(grouping);
    await grouping.ready;
    const nextOffset = async () =>
      Number(
        (
          await db.pool.query<{ next_offset: string }>(
            'SELECT next_offset FROM grouping.consumer_offsets WHERE topic = $1',
            [ns.topics.occurrences],
          )
        ).rows[0]?.next_offset ?? 0,
      );
    const publish = (n: number) =>
      Promise.all(
        Array.from({ length: n }, () => producer.publishOccurrence(occurrence('sigterm'))),
      );
    // two rounds first: the first chunk after an assignment verifies the log (a seek back, nothing
    // applied), so the batch held below is one that applies
    await publish(10);
    await waitFor('the first 10 applied', async () => (await nextOffset()) === 10);
    await publish(5);
    await waitFor('the next 5 applied', async () => (await nextOffset()) === 15);

    // hold the partition's offset row: the next batch's transaction waits on it, mid-batch
    const blocker = await db.pool.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM grouping.consumer_offsets WHERE topic = $1 FOR UPDATE', [
      ns.topics.occurrences,
    ]);
    await publish(20);
    await waitFor('a batch waiting on the offset row', async () => {
      const waiting = await db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'grouping' AND wait_event_type = 'Lock'",
        [db.name],
      );
      return (waiting.rowCount ?? 0) > 0;
    });
    grouping.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    expect(grouping.child.exitCode).toBeNull(); // still finishing the batch in flight
    await blocker.query('ROLLBACK');
    blocker.release();

    expect(await grouping.exited).toBe(0);
    expect(await nextOffset()).toBe(35);
    const seen = await db.pool.query<{ n: number }>(
      'SELECT sum(times_seen)::int AS n FROM grouping.groups',
    );
    expect(seen.rows[0]!.n).toBe(35);
    expect(grouping.output.join('\n')).toContain('"signal":"SIGTERM"');
  });
});
