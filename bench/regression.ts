/**
 * bench/regression: `occurrence_grouped` events/s decided by the regression service (the runtime
 * with its ledger, regression's handler: each event against its group's resolution and the project's
 * releases, proposals through the outbox), issue 14's target ≥ 20,000/s.
 *
 *   npm run bench:regression -- [--events 200000] [--groups 1000] [--batch 1000]
 */
import os from 'node:os';
import { formatTable, parseCli } from '@shoal/config/cli';
import { Codec, createRegistry, type GroupEvent } from '@shoal/contracts';
import { runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import { failurePolicyFromEnv, HEADER, runConsumer } from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import { connections, isolatedDatabase, isolatedTopics, uniqueName, waitFor } from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import { produceRaw, uuidOf } from '../packages/kafka-runtime/test/support.js';
import { regressionConfig } from '../services/regression/src/config.js';
import { regressionHandler } from '../services/regression/src/handler.js';
import { regressionMigrationsDir } from '../services/regression/src/service.js';

const usage = `Usage: npm run bench:regression -- [--events N] [--groups G] [--batch B]

Publishes, on a 6-partition group-events topic, G groups (default 1000) over 5 projects, each
created and resolved in web@1.5.0, 20 releases seen per project (10 semver, 10 ordered by first-seen
time only), then N occurrence_grouped events (default 200000) on those groups: releases drawn from
both kinds, most not newer than the resolution (decided, no regression), some newer (one proposal
per group, then decided again as already proposed). Measures events/s from the first committed
batch to the last, batches of B (default 1000). Needs the local stack (npm run stack -- up).
`;

const { values } = parseCli(usage, {
  events: { type: 'string' },
  groups: { type: 'string' },
  batch: { type: 'string' },
});
const total = Number(values.events ?? 200_000);
const groups = Number(values.groups ?? 1000);
const batch = Number(values.batch ?? 1000);
const PROJECTS = 5;

const ns = await isolatedTopics({ partitions: { groupEvents: 6 } });
const db = await isolatedDatabase({
  dirs: [runtimeMigrationsDir, regressionMigrationsDir],
  schema: serviceSchema('regression'),
});
const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
const resolvedAt = '2025-01-01T00:00:00.000Z';
const semver = Array.from({ length: 10 }, (_, i) => `web@1.${i}.0`);
const dated = Array.from({ length: 10 }, (_, i) => `nightly-${String.fromCharCode(97 + i)}`);
const at = (seconds: number) => new Date(Date.parse(resolvedAt) + seconds * 1000).toISOString();

const setup: GroupEvent[] = [];
for (let p = 1; p <= PROJECTS; p++)
  [...semver, ...dated].forEach((release, i) =>
    setup.push({
      event_id: uuidOf(`release:${p}:${release}`),
      event_type: 'release_seen',
      occurred_at: at(-86_400 + i * 60),
      group_id: p,
      project_id: p,
      release,
    }),
  );
for (let g = 1; g <= groups; g++) {
  const project = (g % PROJECTS) + 1;
  setup.push(
    {
      event_id: uuidOf(`created:${g}`),
      event_type: 'group_created',
      occurred_at: at(-3600),
      group_id: g,
      project_id: project,
      primary_fingerprint: `fp-${g}`,
    },
    {
      event_id: uuidOf(`resolved:${g}`),
      event_type: 'status_changed',
      occurred_at: resolvedAt,
      group_id: g,
      project_id: project,
      status: 'resolved',
      previous_status: 'unresolved',
      sequence: 1,
      resolution_id: 1,
      decided_by: 'upstream',
      resolution: {
        type: g % 2 ? 'in_release' : 'in_commit',
        release: g % 2 ? 'web@1.5.0' : null,
        current_release_version: null,
        commit: g % 2 ? null : 'never-released',
        resolved_at: resolvedAt,
      },
    },
  );
}
const occurrences: GroupEvent[] = Array.from({ length: total }, (_, i) => {
  const g = (i % groups) + 1;
  // 1 in 50 from a newer release (web@1.9.0); the rest from web@1.0.0–1.5.0 or a dated release
  const release = i % 50 === 0 ? 'web@1.9.0' : i % 3 ? semver[i % 6]! : dated[i % 10]!;
  return {
    event_id: uuidOf(`occurrence:${i}`),
    event_type: 'occurrence_grouped',
    occurred_at: at(60 + i / 1000),
    group_id: g,
    project_id: (g % PROJECTS) + 1,
    occurrence_id: uuidOf(`o:${i}`),
    status: 'resolved',
    release,
    detection_time: Date.parse(at(60 + i / 1000)) / 1000,
  };
});
process.stderr.write(`publishing ${setup.length} setup events and ${total} occurrence_grouped…\n`);
const all = [...setup, ...occurrences];
for (let i = 0; i < all.length; i += 10_000)
  await produceRaw(
    ns.topics.groupEvents,
    await Promise.all(
      all.slice(i, i + 10_000).map(async (e) => ({
        key: String(e.group_id),
        value: await codec.encode('groupEvents', e),
        headers: { [HEADER.messageId]: e.event_id },
      })),
    ),
  );

const applied = async () =>
  Number(
    (
      await db.pool.query<{ n: string }>(
        'SELECT coalesce(sum(next_offset), 0) AS n FROM consumer_offsets',
      )
    ).rows[0]!.n,
  );
const group = uniqueName('bench-regression-');
// time inside regression's handler, beside the runtime's own work (decode, ledger, offsets, outbox)
const handle = regressionHandler({
  ...regressionConfig({}),
  statusChanges: ns.topics.statusChanges,
});
// and, inside it, its statements: round trips per batch and the time spent waiting on them
let handlerMs = 0;
let sqlMs = 0;
let statements = 0;
let batches = 0;
const timedHandle: typeof handle = async (messages, tx, ctx) => {
  const t0 = performance.now();
  const query = tx.query.bind(tx) as (...args: unknown[]) => Promise<unknown>;
  const timedTx = new Proxy(tx, {
    get: (target, property, receiver) =>
      property === 'query'
        ? async (...args: unknown[]) => {
            const q0 = performance.now();
            statements += 1;
            try {
              return await query(...args);
            } finally {
              sqlMs += performance.now() - q0;
            }
          }
        : (Reflect.get(target, property, receiver) as unknown),
  });
  try {
    await handle(messages, timedTx, ctx);
  } finally {
    handlerMs += performance.now() - t0;
    batches += 1;
  }
};
const consumer = await runConsumer({
  group,
  topics: ['groupEvents'],
  topicNames: ns.topics,
  handle: timedHandle,
  pool: db.pool,
  kafka: new Kafka({
    brokers: connections().KAFKA_BROKERS,
    clientId: group,
    logLevel: logLevel.NOTHING,
  }),
  codec,
  failure: failurePolicyFromEnv({}),
  logger: createLogger('bench-regression', 'warn'),
  consumerConfig: { maxWaitTimeInMs: 100 },
  maxBatchSize: batch,
});
await waitFor('the first batch', async () => (await applied()) > 0, 120_000);
const started = Date.now();
const before = await applied();
await waitFor(`${all.length} applied`, async () => (await applied()) >= all.length, 30 * 60_000);
const seconds = (Date.now() - started) / 1000;
const handlerSeconds = handlerMs / 1000;
const decided = all.length - before;
const { rows: proposals } = await db.pool.query<{ n: number }>(
  'SELECT count(*)::int AS n FROM regressions',
);
await consumer.stop();
await db.drop();
await ns.drop();
process.stdout.write(
  `${formatTable([
    {
      events: String(decided),
      seconds: seconds.toFixed(1),
      'events/s': (decided / seconds).toFixed(0),
      'in handler': `${handlerSeconds.toFixed(1)} s`,
      'of it SQL': `${(sqlMs / 1000).toFixed(1)} s`,
      'statements/batch': (statements / batches).toFixed(1),
      proposals: String(proposals[0]!.n),
      batch: String(batch),
    },
  ])}\n\nevents: group events applied after the first committed batch (all but ${setup.length} setup events are occurrence_grouped, each decided)\ntarget (issue 14): >= 20,000 occurrence_grouped/s decided\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; Kafka, registry and PostgreSQL on the same machine\n`,
);
process.exit(0);
