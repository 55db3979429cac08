/**
 * bench/grouping: occurrences/s through the grouping service with 1, 10 and 1,000 distinct
 * fingerprints, beside the in-run ceiling (./ceiling.ts: consume, decode/validate, one batched upsert
 * per batch, no runtime) and the same grouping logic with one transaction per message; `--rss` samples
 * this process's RSS (grouping runs in it) every second of the batched run. `--rate R` instead
 * publishes a steady R occ/s and prints the latency from publish to the group row counting it.
 *
 *   npm run bench:grouping -- [--messages 50000] [--per-message 2000] [--fingerprints 1,10,1000] [--rss]
 *   npm run bench:grouping -- --rate 2000 [--seconds 60] [--fingerprints 1000]
 */
import { formatTable, parseCli } from '@shoal/config/cli';
import { SERVICE_DEFAULTS } from '@shoal/kafka-runtime';
import { Codec, createRegistry, type Occurrence } from '@shoal/contracts';
import {
  connections,
  freePort,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  spawnEntryPoint,
  uniqueName,
} from '@shoal/testing';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  encodeAll,
  occurrence,
  produceRaw,
  waitFor,
} from '../packages/kafka-runtime/test/support.js';
import { groupActivityEveryMs } from '../services/grouping/src/activity.js';
import {
  groupingDatabase,
  groupingMain,
  startGrouping,
} from '../services/grouping/test/support.js';
import { ceiling } from './ceiling.js';
import { quantile } from './quantile.js';

const usage = `Usage: npm run bench:grouping -- [--messages N] [--per-message M] [--fingerprints LIST] [--rss]
       npm run bench:grouping -- --rate R [--seconds S] [--warm-up W] [--fingerprints LIST]

For 1, 10 and 1,000 distinct fingerprints: publishes N occurrences (default 50000), then measures
occurrences/s for a plain consume + one batched upsert per batch (the ceiling), for the grouping
service (its deployed defaults: batches of 4,000, 3 partitions at once), and for grouping with one
transaction per message over the first M
(default 2000). --fingerprints picks the cases (default 1,10,1000).
--rss: samples this process's RSS (the grouping service runs in it) every second of the batched
run, prints each sample on stderr and start / after the first 100k / end / max on stdout.
--rate R: with grouping running as its own process (services/grouping/src/main.ts), publishes R occ/s (default fingerprints: 1000) for S seconds
(default 60) plus a probe occurrence every 100 ms on a fingerprint of its own (project 2), and
prints p50/p99/max from a probe's publish until its group's times_seen counts it (polled every
10 ms); target p99 < 500 ms at 2,000 and at 20,000 occ/s. The first W seconds at the rate
(default 5) warm grouping up (JIT, connections, caches) and are not counted: their probes' worst
is printed beside, as the cold start.
Needs the local stack (npm run stack -- up).
`;
const { values } = parseCli(usage, {
  messages: { type: 'string' },
  'per-message': { type: 'string' },
  fingerprints: { type: 'string' },
  rss: { type: 'boolean' },
  rate: { type: 'string' },
  seconds: { type: 'string' },
  'warm-up': { type: 'string' },
});
const total = Number(values.messages ?? 50_000);
const perMessage = Math.min(total, Number(values['per-message'] ?? 2000));
const machine = `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; Kafka, registry and PostgreSQL on the same machine`;

interface RssSample {
  second: number;
  grouped: number;
  rss: number;
}
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

async function grouping(
  topics: Parameters<typeof startGrouping>[0],
  messages: number,
  env: Record<string, string>,
  batch: number,
  rss?: RssSample[],
): Promise<number> {
  const db = await isolatedDatabase(groupingDatabase);
  let grouped = 0;
  const seen = async () =>
    (grouped = Number(
      (await db.pool.query('SELECT coalesce(sum(times_seen), 0) AS n FROM groups')).rows[0].n,
    ));
  const consumer = await startGrouping(topics, db.pool, uniqueName('bench-'), {
    env,
    maxBatchSize: batch,
    concurrency: SERVICE_DEFAULTS.partitionConcurrency,
    // the group_activity flush as deployed (default 5 s)
    activityEveryMs: groupActivityEveryMs(process.env),
  });
  const startedAt = Date.now();
  const sample = (samples: RssSample[]) => {
    const s = {
      second: Math.round((Date.now() - startedAt) / 1000),
      grouped,
      rss: process.memoryUsage.rss(),
    };
    samples.push(s);
    process.stderr.write(`  ${s.second} s: ${s.grouped} grouped, RSS ${mib(s.rss)}\n`);
  };
  if (rss) sample(rss);
  const sampler = rss ? setInterval(() => sample(rss), 1000) : undefined;
  try {
    await waitFor('the first batch', async () => (await seen()) > 0, 60_000);
    const started = Date.now();
    const before = await seen();
    await waitFor(`${messages} grouped`, async () => (await seen()) >= messages, 30 * 60_000);
    const rate = (messages - before) / ((Date.now() - started) / 1000);
    if (rss) sample(rss);
    return rate;
  } finally {
    clearInterval(sampler);
    await consumer.stop();
    await db.drop();
  }
}

/** RSS at the start, once the first 100k are grouped, at the end and at its highest. */
function rssRow(fingerprints: number, samples: RssSample[]): Record<string, string> {
  const after100k = samples.find((s) => s.grouped >= 100_000);
  const end = samples.at(-1)!;
  return {
    fingerprints: String(fingerprints),
    start: mib(samples[0]!.rss),
    'after 100k': after100k ? mib(after100k.rss) : 'n/a (fewer grouped)',
    end: mib(end.rss),
    max: mib(Math.max(...samples.map((s) => s.rss))),
    'end − after 100k': after100k ? mib(end.rss - after100k.rss) : 'n/a',
    samples: String(samples.length),
  };
}

/**
 * Grouping running (its entry point, in its own process) while R occ/s are published for
 * `seconds`, with a probe every 100 ms on its own fingerprint (project 2, one key, so one
 * partition, in order): a probe k is counted once its group's times_seen exceeds k, polled every
 * 10 ms. Publishing starts once a first occurrence (project 3) is grouped, so the consumer's join
 * is not counted; the probes of the first `warmUpSeconds` at the rate are the cold start, reported
 * apart from the steady state's.
 */
async function latency(
  fingerprints: number,
  rate: number,
  seconds: number,
  warmUpSeconds: number,
): Promise<Record<string, string>> {
  const ns = await isolatedTopics({ partitions: { occurrences: 6 } });
  const db = await isolatedDatabase(groupingDatabase);
  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
  // its own process, as deployed: the publisher here does not take its CPU time
  const service = spawnEntryPoint(
    groupingMain,
    {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_CONSUMER_GROUP: uniqueName('bench-'),
      SHOAL_OPS_PORT: String(await freePort()),
    },
    '"consumer running"',
  );
  await Promise.race([
    service.ready,
    service.exited.then(() => {
      throw new Error(`grouping exited:\n${service.output.slice(-20).join('\n')}`);
    }),
  ]);
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  const seed = uniqueName('rate-');
  // measured from when grouping runs (partitions assigned, first batch applied), not from its join
  const first: Occurrence = {
    ...occurrence(0, { projects: 1, seed: `${seed}-first` }),
    project_id: 3,
  };
  await producer.send({
    topic: ns.topics.occurrences,
    acks: -1,
    messages: await encodeAll(codec, [first]),
  });
  await waitFor(
    'the first occurrence grouped',
    async () => (await db.pool.query('SELECT 1 FROM groups WHERE project_id = 3')).rowCount === 1,
    60_000,
  );
  const sentAt: number[] = [];
  const countedAt: number[] = [];
  let deadline = Infinity;
  const poll = (async () => {
    while (countedAt.length < sentAt.length || deadline === Infinity) {
      if (performance.now() > deadline) return;
      const { rows } = await db.pool.query(
        'SELECT coalesce(sum(times_seen), 0) AS n FROM groups WHERE project_id = 2',
      );
      const now = performance.now();
      while (countedAt.length < Math.min(Number(rows[0].n), sentAt.length)) countedAt.push(now);
      await sleep(10);
    }
  })();

  process.stderr.write(
    `${fingerprints} fingerprints: ${rate} occ/s for ${warmUpSeconds} s of warm-up, then ${seconds} s…\n`,
  );
  const started = performance.now();
  let sent = 0;
  let warmUpProbes = -1;
  for (;;) {
    const elapsed = (performance.now() - started) / 1000;
    if (warmUpProbes < 0 && elapsed >= warmUpSeconds) warmUpProbes = sentAt.length;
    if (elapsed >= warmUpSeconds + seconds) break;
    const due = Math.min(10_000, Math.floor(rate * elapsed) - sent);
    const probeDue = sentAt.length <= elapsed * 10;
    if (due <= 0 && !probeDue) {
      await sleep(2);
      continue;
    }
    const load = Array.from({ length: Math.max(0, due) }, (_, k) =>
      occurrence(sent + k, { projects: 1, fingerprints, seed }),
    );
    const probe: Occurrence = {
      ...occurrence(sentAt.length, { projects: 1, fingerprints: 1, seed: `${seed}-probe` }),
      project_id: 2,
      fingerprint: ['probe'],
    };
    const messages = await encodeAll(codec, probeDue ? [...load, probe] : load);
    if (probeDue) sentAt.push(performance.now());
    await producer.send({ topic: ns.topics.occurrences, acks: -1, messages });
    sent += load.length;
  }
  const published = sent / ((performance.now() - started) / 1000);
  const groupedAtEnd = Number(
    (
      await db.pool.query(
        'SELECT coalesce(sum(times_seen), 0) AS n FROM groups WHERE project_id = 1',
      )
    ).rows[0].n,
  );
  deadline = performance.now() + 120_000;
  await poll;
  await producer.disconnect();
  service.child.kill('SIGTERM');
  await service.exited;
  await db.drop();
  await ns.drop();

  const all = countedAt.map((t, k) => t - sentAt[k]!);
  const latencies = all.slice(warmUpProbes).sort((a, b) => a - b);
  const p99 = countedAt.length === sentAt.length ? quantile(latencies, 0.99) : Infinity;
  return {
    fingerprints: String(fingerprints),
    'rate occ/s': String(rate),
    'published occ/s': published.toFixed(0),
    'grouped when publishing ended': `${((100 * groupedAtEnd) / sent).toFixed(1)}%`,
    probes: `${countedAt.length - warmUpProbes}/${sentAt.length - warmUpProbes} counted`,
    'p50 ms': quantile(latencies, 0.5).toFixed(0),
    'p99 ms': p99 === Infinity ? 'n/a (probes missing)' : p99.toFixed(0),
    'max ms': (latencies.at(-1) ?? NaN).toFixed(0),
    'warm-up max ms': warmUpProbes ? Math.max(...all.slice(0, warmUpProbes)).toFixed(0) : 'n/a',
    target: 'p99 < 500 ms',
    met: p99 < 500 ? 'yes' : 'no',
  };
}

const wholeNumber = (flag: string, n: number, least = 1) => {
  if (!Number.isInteger(n) || n < least) {
    process.stderr.write(
      `${flag}: expected a ${least === 0 ? 'non-negative' : 'positive'} whole number\n\n${usage}`,
    );
    process.exit(2);
  }
  return n;
};
const rows: Record<string, string>[] = [];
const cases = (values.fingerprints ?? (values.rate ? '1000' : '1,10,1000'))
  .split(',')
  .map((n) => wholeNumber('--fingerprints', Number(n)));

if (values.rate) {
  const rate = wholeNumber('--rate', Number(values.rate));
  const seconds = wholeNumber('--seconds', Number(values.seconds ?? 60));
  const warmUp = wholeNumber('--warm-up', Number(values['warm-up'] ?? 5), 0);
  for (const fingerprints of cases) rows.push(await latency(fingerprints, rate, seconds, warmUp));
  process.stdout.write(
    `${formatTable(rows)}\n\nlatency: a probe's publish (producer send) until a 10 ms poll sees its group's times_seen count it\n${machine}\n`,
  );
  process.exit(0);
}

const rssRows: Record<string, string>[] = [];
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
  const top = await ceiling(ns.topics.occurrences, codec, total);
  const samples: RssSample[] = [];
  const batched = await grouping(
    ns.topics,
    total,
    {},
    SERVICE_DEFAULTS.maxBatchSize,
    values.rss ? samples : undefined,
  );
  if (values.rss) rssRows.push(rssRow(fingerprints, samples));
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
const memory = values.rss
  ? `\n\nRSS of this process (grouping runs in it) during the batched run, sampled every second:\n${formatTable(rssRows)}`
  : '';
process.stdout.write(`${formatTable(rows)}${memory}\n\n${machine}\n`);
process.exit(0);
