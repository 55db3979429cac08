import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { createRegistry } from '@shoal/contracts';
import { connections, runEntryPoint } from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

const cli = 'deploy/local-stack/src/cli.ts';
const homes: { home: string; env: NodeJS.ProcessEnv }[] = [];

/** A stack of its own: its own folder and ports, so the shared test stack is never touched. */
function isolatedStack(base: number, extra: NodeJS.ProcessEnv = {}) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-stack-'));
  fs.chmodSync(home, 0o755); // the private PostgreSQL cluster runs as user postgres
  const env = {
    SHOAL_STACK_HOME: home,
    SHOAL_KAFKA_PORT: String(base + 2),
    SHOAL_KAFKA_CONTROLLER_PORT: String(base + 3),
    SHOAL_REGISTRY_PORT: String(base + 1),
    SHOAL_REGISTRY_MANAGEMENT_PORT: String(base + 4),
    ...extra,
  };
  homes.push({ home, env });
  return { home, env, run: (...args: string[]) => runEntryPoint(cli, args, env) };
}

const pidOf = (home: string, server: string) =>
  fs.readFileSync(path.join(home, server, `${server}.pid`), 'utf8').trim();

afterAll(() => {
  for (const { home, env } of homes) {
    runEntryPoint(cli, ['down'], env);
    fs.rmSync(home, { recursive: true, force: true });
  }
});

describe('npm run stack', { timeout: 240_000 }, () => {
  it('comes up from nothing (private PostgreSQL, Kafka, registry on PostgreSQL), then up is a no-op, and down stops only its own', async () => {
    const stack = isolatedStack(18080, {
      DATABASE_URL: 'postgres://postgres@127.0.0.1:18085/shoal',
      SHOAL_REGISTRY_STORAGE: 'sql',
    });
    const up = stack.run('up');
    expect(up.stderr + up.stdout).not.toMatch(/^error:/m);
    expect(up.status).toBe(0);
    expect(up.stderr).toContain('postgres: initdb');
    expect(up.stderr).toContain('kafka: formatting storage');
    expect(up.stdout).toMatch(/postgres\s+running\s+127\.0\.0\.1:18085\/shoal\s+\d+/);
    expect(up.stdout).toMatch(/kafka\s+running\s+127\.0\.0\.1:18082\s+\d+\s+Apache Kafka 4\.1\.1/);
    expect(up.stdout).toMatch(
      /registry\s+running\s+http:\/\/127\.0\.0\.1:18081\/apis\/ccompat\/v7\s+\d+\s+.*storage sql/,
    );

    // each server really answers: a metadata request, a registered schema, a query
    const kafka = new Kafka({ brokers: ['127.0.0.1:18082'], logLevel: logLevel.NOTHING }).admin();
    await kafka.connect();
    await kafka.createTopics({ topics: [{ topic: 'kept', numPartitions: 2 }] });
    await kafka.disconnect();
    const registry = createRegistry('http://127.0.0.1:18081/apis/ccompat/v7');
    const schema = {
      type: SchemaType.JSON,
      schema: '{"type":"object","properties":{"a":{"type":"string"}}}',
    } as const;
    const { id } = await registry.register(schema, { subject: 'kept-value' });
    const client = new pg.Client('postgres://postgres@127.0.0.1:18085/shoal');
    await client.connect();
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await client.end();

    const pids = ['postgres', 'kafka', 'registry'].map((s) => pidOf(stack.home, s));
    const again = stack.run('up');
    expect(again.status).toBe(0);
    expect(again.stderr).not.toMatch(/started|initdb|formatting|fetching|collecting/);
    expect(['postgres', 'kafka', 'registry'].map((s) => pidOf(stack.home, s))).toEqual(pids);

    const down = stack.run('down');
    expect(down.stderr).toContain('registry: stopped');
    expect(down.stderr).toContain('kafka: stopped');
    expect(down.stderr).toContain('postgres: stopped');
    expect(stack.run('status').status).toBe(3);
    // the shared stack this suite runs on was not touched
    expect(runEntryPoint(cli, ['status']).status).toBe(0);

    // data survives a restart: the topic in Kafka, the schema id in PostgreSQL-backed registry storage
    expect(stack.run('up').status).toBe(0);
    const admin = new Kafka({ brokers: ['127.0.0.1:18082'], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    expect(await admin.listTopics()).toContain('kept');
    await admin.disconnect();
    expect(
      await createRegistry('http://127.0.0.1:18081/apis/ccompat/v7').getRegistryIdBySchema(
        'kept-value',
        schema,
      ),
    ).toBe(id);
  });

  it('names the server whose port is taken, and shows the log of a server that dies at start', async () => {
    const stack = isolatedStack(18090, {
      DATABASE_URL: connections().DATABASE_URL,
      // the shared registry already answers here, so this stack leaves it alone
      SHOAL_REGISTRY_PORT: new URL(connections().SCHEMA_REGISTRY_URL).port,
    });
    const squatter = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(18092, '127.0.0.1', resolve));
    try {
      const taken = stack.run('up');
      expect(taken.status).toBe(1);
      expect(taken.stderr).toContain(
        'error: kafka: port 18092 is taken by another process that does not answer as kafka; free it or set SHOAL_KAFKA_PORT',
      );
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }

    const controllerSquatter = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => controllerSquatter.listen(18093, '127.0.0.1', resolve));
    try {
      const dies = stack.run('up');
      expect(dies.status).toBe(1);
      expect(dies.stderr).toContain('kafka exited before it answered; last lines of');
      expect(dies.stderr).toMatch(/Address already in use|BindException/);
    } finally {
      await new Promise((resolve) => controllerSquatter.close(resolve));
    }
  });
});
