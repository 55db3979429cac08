/**
 * bench/grouping: occurrences/s through the grouping service with 1, 10 and 1,000 distinct
 * fingerprints, beside the in-run ceiling (a plain kafkajs consume loop doing one batched upsert per
 * batch, no runtime) and the same grouping logic with one transaction per message.
 *
 *   npm run bench:grouping -- [--messages 50000] [--per-message 2000] [--fingerprints 1,10,1000]
 */
import { formatTable, parseCli } from '@shoal/config/cli';
import { Codec, createRegistry, type Occurrence } from '@shoal/contracts';
import { isolatedDatabase, isolatedTopics, kafka, uniqueName, connections } from '@shoal/testing';
import os from 'node:os';
import {
  encodeAll,
  occurrence,
  produceRaw,
  waitFor,
} from '../packages/kafka-runtime/test/support.js';
import { groupActivityEveryMs } from '../services/grouping/src/activity.js';
import { groupingDatabase, startGrouping } from '../services/grouping/test/support.js';

const usage = `Usage: npm run bench:grouping -- [--messages N] [--per-message M] [--fingerprints LIST]

For 1, 10 and 1,000 distinct fingerprints: publishes N occurrences (default 50000), then measures
occurrences/s for a plain consume + one batched upsert per batch (the ceiling), for the grouping
service (batches of 500), and for grouping with one transaction per message over the first M
(default 2000). --fingerprints picks the cases (default 1,10,1000). Needs the local stack (npm run stack -- up).
`;
const { values } = parseCli(usage, {
  messages: { type: 'string' },
  'per-message': { type: 'string' },
  fingerprints: { type: 'string' },
});
const total = Number(values.messages ?? 50_000);
const perMessage = Math.min(total, Number(values['per-message'] ?? 2000));

async function ceiling(topic: string, codec: Codec): Promise<number> {
  const db = await isolatedDatabase({ migrate: false });
  await db.pool.query(
    'CREATE TABLE counts (project_id int, hash text, n bigint, PRIMARY KEY (project_id, hash))',
  );
  const consumer = kafka().consumer({ groupId: uniqueName('ceiling-'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let started = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      partitionsConsumedConcurrently: 3,
      eachBatch: async ({ batch }) => {
        if (!started) started = Date.now();
        const decoded = await Promise.all(
          batch.messages.map((m) => codec.decode('occurrences', m.value)),
        );
        const counts = new Map<string, [number, string, number]>();
        for (const o of decoded) {
          const key = `${o.project_id}:${o.fingerprint[0]}`;
          const c = counts.get(key) ?? [o.project_id, o.fingerprint[0], 0];
          c[2]++;
          counts.set(key, c);
        }
        const rows = [...counts.values()];
        await db.pool.query(
          `INSERT INTO counts SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[])
           ON CONFLICT (project_id, hash) DO UPDATE SET n = counts.n + EXCLUDED.n`,
          [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
        );
        seen += batch.messages.length;
        if (seen >= total) resolve();
      },
    });
  });
  const rate = total / ((Date.now() - started) / 1000);
  await consumer.disconnect();
  await db.drop();
  return rate;
}

async function grouping(
  topics: Parameters<typeof startGrouping>[0],
  messages: number,
  env: Record<string, string>,
  batch: number,
): Promise<number> {
  const db = await isolatedDatabase(groupingDatabase);
  const seen = async () =>
    Number((await db.pool.query('SELECT coalesce(sum(times_seen), 0) AS n FROM groups')).rows[0].n);
  const consumer = await startGrouping(topics, db.pool, uniqueName('bench-'), {
    env,
    maxBatchSize: batch,
    // the group_activity flush as deployed (default 5 s)
    activityEveryMs: groupActivityEveryMs(process.env),
  });
  await waitFor('the first batch', async () => (await seen()) > 0, 60_000);
  const started = Date.now();
  const before = await seen();
  await waitFor(`${messages} grouped`, async () => (await seen()) >= messages, 30 * 60_000);
  const rate = (messages - before) / ((Date.now() - started) / 1000);
  await consumer.stop();
  await db.drop();
  return rate;
}

const rows: Record<string, string>[] = [];
const cases = (values.fingerprints ?? '1,10,1000').split(',').map(Number);
if (cases.some((n) => !Number.isInteger(n) || n < 1))
  throw new Error(
    `--fingerprints: expected a comma-separated list of positive whole numbers, got ${values.fingerprints}`,
  );
for (const fingerprints of cases) {
  const ns = await isolatedTopics({ partitions: { occurrences: 6 } });
  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
  process.stderr.write(`${fingerprints} fingerprints: publishing ${total}…\n`);
  for (let i = 0; i < total; i += 10_000) {
    const slice: Occurrence[] = Array.from({ length: Math.min(10_000, total - i) }, (_, k) =>
      occurrence(i + k, { projects: 1, fingerprints, seed: `bench-${fingerprints}` }),
    );
    await produceRaw(ns.topics.occurrences, await encodeAll(codec, slice));
  }
  const top = await ceiling(ns.topics.occurrences, codec);
  const batched = await grouping(ns.topics, total, {}, 500);
  const single = await grouping(ns.topics, perMessage, {}, 1);
  rows.push({
    fingerprints: String(fingerprints),
    'ceiling occ/s': top.toFixed(0),
    'grouping occ/s': batched.toFixed(0),
    'of ceiling': `${((100 * batched) / top).toFixed(1)}%`,
    'per-message occ/s': single.toFixed(0),
    'batched / per-message': `${(batched / single).toFixed(1)}x`,
  });
  await ns.drop();
}
process.stdout.write(
  `${formatTable(rows)}\n\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; Kafka, registry and PostgreSQL on the same machine\n`,
);
process.exit(0);
