/**
 * bench/gateway: accepted occurrences/s through the ingest gateway's `POST /v1/occurrences` (202 only
 * once the broker acknowledged every item, acks=all) with 1 and with 100 occurrences per request, and
 * latency at a steady request rate of single occurrences, beside the targets of issue 13. The
 * gateway runs as its own entry point (as deployed) on fresh topics of the running stack; autocannon
 * is the load generator. Reports, never fails: exit 0 whether or not a target is met.
 *
 *   npm run bench:gateway -- [--duration 10] [--rate 2000] [--log-level warn]
 */
import { formatTable, parseCli } from '@shoal/config/cli';
import { withAdmin as withKafkaAdmin } from '@shoal/contracts';
import {
  connections,
  freePort,
  isolatedTopics,
  repoRoot,
  spawnEntryPoint,
  waitFor,
} from '@shoal/testing';
import autocannon from 'autocannon';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const usage = `Usage: npm run bench:gateway -- [--duration S] [--rate R] [--log-level LEVEL]

Starts the ingest gateway (services/ingest-gateway/src/main.ts) on fresh topics of the running stack
and drives POST /v1/occurrences with autocannon, each run --duration seconds (default 10) after a
1 s warm-up:
  1 per request     as fast as it answers (50 connections): accepted occurrences/s
  100 per request   as fast as it answers (10 connections): accepted occurrences/s
  R req/s           single occurrences at a steady --rate R requests/s (default 2000): p50/p99
Targets (issue 13): >= 10,000 accepted occurrences/s; p99 < 50 ms at 2,000 req/s.
--log-level is the gateway's LOG_LEVEL (default warn: no per-request log lines; info as deployed).
Always exits 0: a benchmark reports. Needs the local stack (npm run stack -- up).
`;
const { values } = parseCli(usage, {
  duration: { type: 'string' },
  rate: { type: 'string' },
  'log-level': { type: 'string' },
});
const duration = Number(values.duration ?? 10);
const rate = Number(values.rate ?? 2000);
for (const [flag, n] of [
  ['--duration', duration],
  ['--rate', rate],
] as const)
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`${flag}: expected a positive whole number\n\n${usage}`);
    process.exit(2);
  }

const token = 'bench-token';
const sample = JSON.parse(
  fs.readFileSync(
    path.join(repoRoot, 'schemas/examples/occurrence.sentry-monitor-failure.json'),
    'utf8',
  ),
) as Record<string, unknown>;
const withId = () => ({ ...sample, id: randomUUID().replaceAll('-', '') });
const single = JSON.stringify(withId());
const hundred = JSON.stringify(Array.from({ length: 100 }, withId));

const ns = await isolatedTopics();
const port = await freePort();
const gateway = spawnEntryPoint(
  path.join(repoRoot, 'services/ingest-gateway/src/main.ts'),
  {
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    SHOAL_GATEWAY_PORT: String(port),
    SHOAL_INGEST_TOKENS: token,
    LOG_LEVEL: values['log-level'] ?? 'warn',
  },
  'Server listening',
);
const url = `http://127.0.0.1:${port}/v1/occurrences`;
await waitFor(
  'the gateway to answer /readyz',
  async () => {
    if (gateway.child.exitCode !== null)
      throw new Error(`the gateway exited:\n${gateway.output.slice(-20).join('\n')}`);
    return fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
  },
  60_000,
);

const load = (body: string, seconds: number, options: Partial<autocannon.Options>) =>
  autocannon({
    url,
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body,
    duration: seconds,
    ...options,
  });

interface Run {
  result: autocannon.Result;
  perRequest: number;
}
async function measure(
  label: string,
  body: string,
  perRequest: number,
  options: Partial<autocannon.Options>,
): Promise<Run> {
  process.stderr.write(`${label}: ${duration} s…\n`);
  await load(body, 1, options);
  return { result: await load(body, duration, options), perRequest };
}

const runs = {
  one: await measure('1 per request', single, 1, { connections: 50 }),
  hundred: await measure('100 per request', hundred, 100, { connections: 10 }),
  steady: await measure(`${rate} req/s`, single, 1, { connections: 100, overallRate: rate }),
};
const accepted = ({ result, perRequest }: Run) => (result['2xx'] * perRequest) / result.duration;
const refused = ({ result }: Run) =>
  result.non2xx || result.errors ? `${result.non2xx} non-2xx, ${result.errors} errors` : '';
const met = (ok: boolean) => (ok ? 'yes' : 'no');

const rows = [
  {
    run: '1 per request',
    figure: `${accepted(runs.one).toFixed(0)} accepted occ/s`,
    target: '>= 10000 occ/s',
    met: met(accepted(runs.one) >= 10_000),
    'p50 / p99 ms': `${runs.one.result.latency.p50} / ${runs.one.result.latency.p99}`,
    refused: refused(runs.one),
  },
  {
    run: '100 per request',
    figure: `${accepted(runs.hundred).toFixed(0)} accepted occ/s`,
    target: '>= 10000 occ/s',
    met: met(accepted(runs.hundred) >= 10_000),
    'p50 / p99 ms': `${runs.hundred.result.latency.p50} / ${runs.hundred.result.latency.p99}`,
    refused: refused(runs.hundred),
  },
  {
    run: `${rate} req/s, 1 per request`,
    figure: `p99 ${runs.steady.result.latency.p99} ms (${(runs.steady.result['2xx'] / runs.steady.result.duration).toFixed(0)} req/s answered 2xx)`,
    target: rate === 2000 ? 'p99 < 50 ms' : 'p99 < 50 ms (at 2000 req/s)',
    met: met(runs.steady.result.latency.p99 < 50),
    'p50 / p99 ms': `${runs.steady.result.latency.p50} / ${runs.steady.result.latency.p99}`,
    refused: refused(runs.steady),
  },
];

gateway.child.kill('SIGTERM');
await gateway.exited;
// every 202 means on the topic: warm-ups included, the topic holds at least what was accepted
const onTopic = (
  await withKafkaAdmin(connections().KAFKA_BROKERS, (admin) =>
    admin.fetchTopicOffsets(ns.topics.occurrences),
  )
).reduce((n, p) => n + Number(p.high), 0);
const acceptedTotal = Object.values(runs).reduce(
  (n, { result, perRequest }) => n + result['2xx'] * perRequest,
  0,
);
await ns.drop();

process.stdout.write(
  `${formatTable(rows)}\n\n${onTopic} occurrences on the topic for ${acceptedTotal} accepted in the measured runs (plus warm-ups)\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, autocannon in this process, the gateway in its own; Kafka, registry and PostgreSQL on the same machine\n`,
);
process.exit(0);
