import { occurrenceKey, type Occurrence } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { createLogger } from '@shoal/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHeartbeat } from '../../kafka-runtime/src/heartbeat.js';
import {
  codecFor,
  counterDatabase,
  deletedProjects,
  encodeAll,
  liveProjects,
  occurrence,
  produceRaw,
  spawnCounter,
  storedNextOffset,
  unpublished,
} from '../../kafka-runtime/test/support.js';
import { closedPort, shoalRunners } from './support.js';

// `shoal status` as operators run it, against the runtime's counter service running as a process
// (runService: migrations, consumer, heartbeat) on a database and topics of its own: its instance,
// lag, dead letters and parked key; then the registry, PostgreSQL, Kafka and the service itself
// down (an instance failing a check, the process killed).

let ns: IsolatedTopics;
let db: IsolatedDatabase;
let counter: RunningEntryPoint;
const group = uniqueName('cli-status-');
const { shoal } = shoalRunners(() => ({ DATABASE_URL: db.url, SHOAL_ERROR_TRACKER_DSN: '' }));

// project 7 is deleted: its occurrence is dead-lettered and, the topic being ordered, parks its
// key, and the next one of that key waits behind it
const values: Occurrence[] = [
  occurrence(0, { seed: 'status' }),
  { ...occurrence(1, { seed: 'status' }), project_id: 7, fingerprint: ['fp-parked'] },
  { ...occurrence(2, { seed: 'status' }), project_id: 7, fingerprint: ['fp-parked'] },
  occurrence(3, { seed: 'status' }),
];

const statusOf = (env: NodeJS.ProcessEnv = {}) => {
  const run = shoal(['status', '--json'], env);
  return { ...run, json: JSON.parse(run.stdout) as Record<string, unknown> };
};

const dependency = (json: Record<string, unknown>, name: string) =>
  (json.dependencies as { name: string; status: string; detail: string }[]).find(
    (d) => d.name === name,
  );

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  db = await isolatedDatabase(counterDatabase);
  await liveProjects(db.pool, [1, 2, 3]);
  await deletedProjects(db.pool, [7]);
  counter = spawnCounter({
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    DATABASE_URL: db.url,
    SHOAL_CONSUMER_GROUP: group,
    SHOAL_ORDERED_TOPICS: 'occurrences',
    SHOAL_SESSION_TIMEOUT_MS: '2000',
    SHOAL_ERROR_TRACKER_DSN: '',
    SHOAL_HEARTBEAT_SECONDS: '2',
  });
  await counter.ready;
  await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values), 0);
  await waitFor(
    'the counter to apply everything, publish its outbox and beat ready',
    async () =>
      (await storedNextOffset(db.pool, group, ns.topics.occurrences)) === values.length &&
      (await unpublished(db.pool)) === 0 &&
      (await db.pool.query('SELECT 1 FROM instance_heartbeats WHERE ready')).rowCount === 1,
    90_000,
  );
}, 180_000);

afterAll(async () => {
  if (counter?.child.exitCode === null) {
    counter.child.kill('SIGKILL');
    await counter.exited;
  }
  await Promise.all([db?.drop(), ns?.drop()]);
});

describe('shoal status', () => {
  it('shows each instance, lag per partition, dead letters, parked keys and the outbox; all ready: exit 0', () => {
    const { status, json, stderr } = statusOf();
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(json).toMatchObject({
      ready: true,
      dependenciesDown: false,
      services: [
        {
          service: 'counter',
          ready: true,
          why: null,
          instances: [
            {
              live: true,
              ready: true,
              pid: counter.child.pid,
              checks: {
                consumer: { status: 'ok' },
                postgres: { status: 'ok' },
                kafka: { status: 'ok' },
                registry: { status: 'ok' },
                error_tracker: { status: 'not configured' },
              },
            },
          ],
          groups: [
            {
              group,
              partitions: [
                {
                  topic: ns.topics.occurrences,
                  partition: 0,
                  nextOffset: 4,
                  highWatermark: 4,
                  lag: 0,
                },
              ],
              deadLetters: { stale_reference: 1 },
              parked: { keys: 1, messages: 1, oldest: expect.any(String) },
              held: [],
            },
          ],
          outbox: { unpublishedRows: 0, setAside: 0 },
          issueGroups: null,
        },
      ],
    });
    expect(dependency(json, 'kafka')?.status).toBe('ok');
    expect(dependency(json, 'postgres')?.status).toBe('ok');
    expect(dependency(json, 'registry')?.status).toBe('ok');
    expect(dependency(json, 'error tracker')).toMatchObject({
      status: 'not configured',
      detail: 'SHOAL_ERROR_TRACKER_DSN is unset: unhandled errors are only logged',
    });

    const human = shoal(['status']);
    expect(human.status).toBe(0);
    expect(human.stdout).toContain('service counter: ready');
    expect(human.stdout).toMatch(/ ready, beat \S+, error tracker not configured/);
    expect(human.stdout).toContain(`${ns.topics.occurrences}/0: 0`);
    expect(human.stdout).toMatch(/dead letters\s*│ stale_reference 1/);
    expect(human.stdout).toMatch(/parked\s*│ 1 key\(s\), 1 message\(s\), oldest since/);
    expect(human.stdout).toMatch(/│ registry\s*│ ok/);
    expect(human.stdout.trimEnd().endsWith('ready')).toBe(true);
    expect(occurrenceKey(values[1]!)).toBe(occurrenceKey(values[2]!));
  }, 60_000);

  it('the error tracker never decides readiness: a DSN is configured, status 0; off is off', () => {
    const set = statusOf({ SHOAL_ERROR_TRACKER_DSN: 'https://public-key@o1.ingest.example/42' });
    expect(set.status).toBe(0);
    expect(dependency(set.json, 'error tracker')).toEqual({
      name: 'error tracker',
      decidesReadiness: false,
      status: 'configured',
      detail: 'unhandled errors are reported to o1.ingest.example',
    });
    expect(set.stdout).not.toContain('public-key');
    const off = statusOf({ SHOAL_ERROR_TRACKER_DSN: 'off' });
    expect(off.status).toBe(0);
    expect(dependency(off.json, 'error tracker')?.status).toBe('off');
  }, 60_000);

  it('the registry unreachable is a down line saying why: exit 4', async () => {
    // a port nothing listens on (the shared registry keeps running)
    const url = `http://127.0.0.1:${await closedPort()}/apis/ccompat/v7`;
    const env = { SCHEMA_REGISTRY_URL: url };
    const { status, json } = statusOf(env);
    expect(status).toBe(4);
    expect(json.ready).toBe(false);
    expect(dependency(json, 'registry')).toMatchObject({
      status: 'down',
      detail: `${url}: fetch failed (ECONNREFUSED)`,
    });
    expect(dependency(json, 'kafka')?.status).toBe('ok');
    const human = shoal(['status'], env);
    expect(human.status).toBe(4);
    expect(human.stdout).toMatch(/│ registry\s*│ down\s*│ http:\/\/127\.0\.0\.1:\d+\/apis/);
    expect(human.stdout.trimEnd().endsWith('not ready')).toBe(true);
  }, 60_000);

  it('PostgreSQL down: a down line without its password, services unknown, exit 4', () => {
    const { status, json, stdout, stderr } = statusOf({
      DATABASE_URL: 'postgres://shoal:s3cret-pw@127.0.0.1:1/shoal',
    });
    expect(status).toBe(4);
    expect(json.services).toBeNull();
    expect(dependency(json, 'postgres')).toMatchObject({
      status: 'down',
      detail: expect.stringContaining('postgres://shoal:***@127.0.0.1:1/shoal: '),
    });
    expect(stdout + stderr).not.toContain('s3cret-pw');
  }, 60_000);

  it('Kafka down: a down line, lag unknown, exit 4', () => {
    const { status, json } = statusOf({ KAFKA_BROKERS: '127.0.0.1:1' });
    expect(status).toBe(4);
    expect(dependency(json, 'kafka')?.status).toBe('down');
    const [service] = json.services as { groups: { partitions: { lag: unknown }[] }[] }[];
    expect(service!.groups[0]!.partitions[0]!.lag).toBeNull();
  }, 60_000);

  it('an instance whose check fails is named with it: not ready, exit 4', async () => {
    // a second instance of the service beside the process, whose consumer check fails
    const halted = startHeartbeat({
      pool: db.pool,
      group,
      checks: {
        consumer: () => Promise.reject(new Error('partition 0 halted: offset mismatch')),
        postgres: async () => void (await db.pool.query('SELECT 1')),
      },
      logger: createLogger('status-test', 'silent'),
      // the CLI runs synchronously (spawnSync): this process beats nothing meanwhile
      everyMs: 60_000,
    });
    try {
      await halted.beat();
      const { status, json } = statusOf();
      expect(status).toBe(4);
      expect(json.dependenciesDown).toBe(false);
      expect(json.services).toMatchObject([
        {
          service: 'counter',
          ready: false,
          why: `${halted.instanceId} not ready (consumer: partition 0 halted: offset mismatch)`,
        },
      ]);
      expect(shoal(['status']).stdout).toContain(`${halted.instanceId} not ready, beat`);
    } finally {
      await halted.stop();
    }
    expect(statusOf().status).toBe(0);
  }, 60_000);

  it('an instance that died (SIGKILL) is gone once it misses three beats: not ready, exit 4', async () => {
    counter.child.kill('SIGKILL');
    await counter.exited;
    await waitFor('the instance to count as gone', async () => statusOf().status === 4, 30_000);
    const { json } = statusOf();
    expect(json.dependenciesDown).toBe(false);
    expect(json.services).toMatchObject([
      {
        service: 'counter',
        ready: false,
        why: expect.stringMatching(/^no live instance \(last beat \d{4}-.*\)$/),
        instances: [{ pid: counter.child.pid, live: false }],
      },
    ]);
  }, 60_000);
});
