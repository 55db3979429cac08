/**
 * bench/api: the lifecycle agent API end to end — HTTP in, a command produced (acks=all), decided
 * by lifecycle's decide consumer, the reply sent when the outcome is recorded — beside the targets
 * of issue 16. Lifecycle runs as its own entry point (services/lifecycle/src/main.ts: consumers and
 * API in one process, as deployed) on fresh topics and a fresh database of the running stack;
 * issues are opened through the commands topic as lifecycle's intake opens them. Reports, never
 * fails: exit 0 whether or not a target is met.
 *
 *   npm run bench:api -- [--duration 10] [--rate 500] [--issues 200] [--claim-issues 50] [--memory 1000000] [--runs commands,claims,rate]
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatTable, parseCli } from '@shoal/config/cli';
import { withAdmin as withKafkaAdmin, type LifecycleCommand } from '@shoal/contracts';
import { createProducer } from '@shoal/producer';
import {
  connections,
  freePort,
  isolatedDatabase,
  isolatedTopics,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
} from '@shoal/testing';
import autocannon from 'autocannon';
import { quantile } from './quantile.js';

const usage = `Usage: npm run bench:api -- [--duration S] [--rate R] [--issues N] [--claim-issues M] [--memory C] [--runs LIST] [--log-level LEVEL]

Starts lifecycle (services/lifecycle/src/main.ts) on fresh topics and a fresh database of the
running stack, opens N issues (default 200) through the commands topic, then, each run --duration
seconds (default 10) after a 1 s warm-up (5 s at the rate for R/s):
  commands/s     POST /v1/issues/{id}/notes as fast as decided (autocannon, 256 connections): 200s/s
  claims/s       M issues (default 50), 10 agents each racing to claim; a winner releases at once
                 and claims again, a loser tries again after 10 ms: granted claims/s, claims
                 decided/s (granted, or refused by decide: produced past the API's pre-check, which
                 answers 409 for an issue it reads as claimed without producing), and claims
                 answered 200 or 409/s
  R/s            notes at a steady --rate R requests/s (default 500; 20 autocannon instances of R/20
                 each, 10 connections apiece, started 50 ms apart: one instance sends its second's
                 quota at once): round-trip p50/p99, each reply sent once the outcome is recorded
  memory         with --memory C: C notes produced straight onto the commands topic (decide's part
                 of the work, without HTTP), lifecycle's RSS at the start, after 100,000 decided,
                 at the end and its maximum (sampled every second, each 10 s printed); flat: the
                 end within 10 % of the RSS after 100,000
--runs picks which of commands, claims and rate run (default all three, in that order; memory runs
with --memory). Lifecycle's RSS is sampled every second throughout: its maximum is reported.
Targets (issue 16): >= 2,000 commands/s; >= 500 claims/s with 10 agents per issue (read as claims answered
200 or 409: granted claims follow the round trip, two per grant on one issue at a time); p99 < 100 ms at 500/s.
Always exits 0: a benchmark reports. Needs the local stack (npm run stack -- up).
`;
const { values } = parseCli(usage, {
  duration: { type: 'string' },
  rate: { type: 'string' },
  issues: { type: 'string' },
  'claim-issues': { type: 'string' },
  memory: { type: 'string' },
  runs: { type: 'string' },
  'log-level': { type: 'string' },
});
const duration = Number(values.duration ?? 10);
const rate = Number(values.rate ?? 500);
const issueCount = Number(values.issues ?? 200);
const claimIssues = Number(values['claim-issues'] ?? 50);
const memoryCommands = values.memory === undefined ? undefined : Number(values.memory);
for (const [flag, n] of [
  ['--duration', duration],
  ['--rate', rate],
  ['--issues', issueCount],
  ['--claim-issues', claimIssues],
  ['--memory', memoryCommands ?? 1],
] as const)
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`${flag}: expected a positive whole number\n\n${usage}`);
    process.exit(2);
  }

const RUNS = ['commands', 'claims', 'rate'] as const;
const runs = new Set((values.runs ?? RUNS.join(',')).split(',').map((r) => r.trim()));
const unknownRun = [...runs].find((r) => !(RUNS as readonly string[]).includes(r));
if (unknownRun !== undefined || runs.size === 0) {
  process.stderr.write(
    `--runs: expected some of ${RUNS.join(', ')}, got ${values.runs}\n\n${usage}`,
  );
  process.exit(2);
}

const agents = Array.from({ length: 10 }, (_, i) => ({
  actor: `agent-${i}`,
  token: `bench-token-${i}`,
}));
const writer = agents[0]!;
const ns = await isolatedTopics();
const db = await isolatedDatabase({ migrate: false });
const port = await freePort();
const lifecycle = spawnEntryPoint(
  path.join(repoRoot, 'services/lifecycle/src/main.ts'),
  {
    DATABASE_URL: db.url,
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    SHOAL_API_PORT: String(port),
    SHOAL_API_TOKENS: agents.map((a) => `${a.actor}:${a.token}:read+claim+write`).join(','),
    SHOAL_API_RATE_LIMIT: '10000000',
    // Kafka groups of its own: another lifecycle running at once in the default `shoal.lifecycle.*`
    // groups would be given some of these partitions, and never read them
    SHOAL_CONSUMER_GROUP: uniqueName('bench-lifecycle-'),
    LOG_LEVEL: values['log-level'] ?? 'warn',
  },
  'agent API listening',
);
const base = `http://127.0.0.1:${port}/v1`;
const auth = (agent = writer) => ({ authorization: `Bearer ${agent.token}` });
await waitFor(
  'lifecycle to answer GET /v1/issues',
  async () => {
    if (lifecycle.child.exitCode !== null)
      throw new Error(`lifecycle exited:\n${lifecycle.output.slice(-20).join('\n')}`);
    return fetch(`${base}/issues?limit=1`, { headers: auth() }).then(
      (r) => r.ok,
      () => false,
    );
  },
  120_000,
);

// issues, opened as lifecycle's intake opens them (system commands on the commands topic)
const producer = createProducer({
  brokers: connections().KAFKA_BROKERS,
  registryUrl: connections().SCHEMA_REGISTRY_URL,
  namespace: ns.namespace,
});
const ids = Array.from({ length: issueCount + claimIssues }, (_, i) => i + 1);
const at = new Date().toISOString();
await Promise.all(
  ids.map((id) =>
    producer.publishLifecycleCommand({
      command_id: randomUUID(),
      command: 'open',
      issue_id: id,
      actor: 'bench',
      origin: 'system',
      issued_at: at,
      project_id: 1,
      group: {
        title: `bench ${id}`,
        level: 'error',
        primary_fingerprint: `fp-${id}`,
        times_seen: 1,
      },
    } satisfies LifecycleCommand),
  ),
);
const count = async (table: string, where = 'true') =>
  (
    await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM lifecycle.${table} WHERE ${where}`,
    )
  ).rows[0]!.n;
await waitFor('the issues opened', async () => (await count('issues')) === ids.length);
const noteIds = ids.slice(0, issueCount);
const claimIds = ids.slice(issueCount);

const rss = () => {
  const status = fs.readFileSync(`/proc/${lifecycle.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
};
/** CPU time (user + system) of lifecycle and of this process since the call, as % of one core. */
const cpuMeter = () => {
  const lifecycleTicks = () => {
    const fields = fs
      .readFileSync(`/proc/${lifecycle.child.pid}/stat`, 'utf8')
      .split(') ')[1]!
      .split(' ');
    // utime and stime, fields 14 and 15 of stat (11 and 12 after the command's name)
    return Number(fields[11]) + Number(fields[12]);
  };
  const startedAt = Date.now();
  const ticks = lifecycleTicks();
  const own = process.cpuUsage();
  return () => {
    const ms = Date.now() - startedAt;
    const mine = process.cpuUsage(own);
    // clock ticks are 1/100 s on Linux
    const lifecycleMs = (lifecycleTicks() - ticks) * 10;
    return `lifecycle ${((100 * lifecycleMs) / ms).toFixed(0)} %, bench ${((100 * (mine.user + mine.system)) / 1000 / ms).toFixed(0)} %`;
  };
};
const rssAtStart = rss();
let rssMax = rssAtStart;
const sampling = setInterval(() => (rssMax = Math.max(rssMax, rss())), 1000);
const loadAtStart = os.loadavg()[0]!;
const load = () => os.loadavg()[0]!.toFixed(1);

/** Notes, each on the next issue of the list (autocannon's requests cycle through them). */
const notes = (seconds: number, options: Partial<autocannon.Options>) => {
  let next = 0;
  return autocannon({
    url: base,
    duration: seconds,
    headers: { ...auth(), 'content-type': 'application/json' },
    requests: [
      {
        method: 'POST',
        setupRequest: (request) => ({
          ...request,
          path: `/v1/issues/${noteIds[next++ % noteIds.length]}/notes`,
          body: JSON.stringify({ note: `bench ${next}` }),
        }),
      },
    ],
    ...options,
  });
};
async function measureNotes(label: string, options: Partial<autocannon.Options>) {
  process.stderr.write(`${label}: ${duration} s…\n`);
  await notes(1, options);
  const cpu = cpuMeter();
  const result = await notes(duration, options);
  return { ...result, cpu: cpu() };
}

/**
 * Notes at a steady `rate`/s for `seconds`. autocannon's `overallRate` is a quota per connection
 * per second, sent as fast as replies allow once the second starts (its lib/httpClient.js resets
 * `reqsMadeThisSecond` every 1,000 ms): one instance at 500/s sends all 500 in the first ~300 ms of
 * each second and times the queue that burst makes. Twenty instances of rate/20 each, started
 * 1/20 s apart, send a twentieth of the second's requests every 50 ms instead.
 */
async function steadyNotes(seconds: number) {
  const slices = Math.min(20, rate);
  const latencies: number[] = [];
  const cpu = cpuMeter();
  const results = await Promise.all(
    Array.from({ length: slices }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, (i * 1000) / slices));
      const share = Math.floor(rate / slices) + (i < rate % slices ? 1 : 0);
      return notes(seconds, {
        connections: Math.min(10, share),
        overallRate: share,
        setupClient: (client) =>
          client.on('response', (_status: number, _bytes: number, ms: number) =>
            latencies.push(ms),
          ),
      });
    }),
  );
  latencies.sort((a, b) => a - b);
  const sum = (key: 'non2xx' | 'errors' | 'timeouts' | '2xx') =>
    results.reduce((n, r) => n + r[key], 0);
  return {
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    answeredPerSecond: sum('2xx') / seconds,
    non2xx: sum('non2xx'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
    cpu: cpu(),
  };
}

/** 10 agents per issue racing to claim; a winner releases at once and races again. */
async function claimRace(seconds: number) {
  const decidedBefore = await count('lifecycle_commands', `command = 'claim'`);
  let granted = 0;
  let refused = 0;
  const other = new Map<number, number>();
  const until = Date.now() + seconds * 1000;
  const agent = async (issue: number, who: (typeof agents)[number]) => {
    while (Date.now() < until) {
      const claim = await fetch(`${base}/issues/${issue}/claim`, {
        method: 'POST',
        headers: { ...auth(who), 'content-type': 'application/json', prefer: 'wait=10' },
        body: '{}',
      });
      const body = (await claim.json()) as { claim_token?: string };
      if (claim.status === 200) {
        granted++;
        const release = await fetch(`${base}/issues/${issue}/claim`, {
          method: 'DELETE',
          headers: { ...auth(who), 'x-claim-token': body.claim_token!, prefer: 'wait=10' },
        });
        await release.arrayBuffer();
      } else if (claim.status === 409) {
        refused++;
        // a loser tries again shortly, as an agent polling for the issue would, not in a busy loop
        await new Promise((resolve) => setTimeout(resolve, 10));
      } else other.set(claim.status, (other.get(claim.status) ?? 0) + 1);
    }
  };
  const started = Date.now();
  const cpu = cpuMeter();
  await Promise.all(claimIds.flatMap((issue) => agents.map((who) => agent(issue, who))));
  const elapsed = (Date.now() - started) / 1000;
  // every claim produced is decided by now: its agent waited for the outcome
  const decided = (await count('lifecycle_commands', `command = 'claim'`)) - decidedBefore;
  return {
    granted: granted / elapsed,
    decided: decided / elapsed,
    attempts: (granted + refused) / elapsed,
    cpu: cpu(),
    other: [...other].map(([status, n]) => `${n} × ${status}`).join(', '),
  };
}

/**
 * `n` notes produced straight onto the commands topic (as the API would, without HTTP), decide
 * keeping up as it can; lifecycle's RSS every second until all are decided.
 */
async function memoryRun(n: number) {
  process.stderr.write(`memory: ${n} commands onto the topic…\n`);
  const before = await count('lifecycle_commands');
  const start = rss();
  let max = start;
  let after100k: number | undefined;
  let decided = 0;
  let produced = 0;
  const started = Date.now();
  let lastPrint = started;
  const sample = async () => {
    decided = (await count('lifecycle_commands')) - before;
    const now = rss();
    max = Math.max(max, now);
    if (after100k === undefined && decided >= 100_000) after100k = now;
    if (Date.now() - lastPrint >= 10_000) {
      lastPrint = Date.now();
      process.stderr.write(
        `  ${((lastPrint - started) / 1000).toFixed(0)} s: ${produced} produced, ${decided} decided, RSS ${now.toFixed(0)} MiB (max ${max.toFixed(0)}), load ${load()}\n`,
      );
    }
  };
  let sampling = Promise.resolve();
  const sampler = setInterval(() => (sampling = sampling.then(sample)), 1000);
  const issuedAt = new Date().toISOString();
  // produced in windows, so that the bench holds a window's promises, not a million
  for (let i = 0; i < n; i += 5000) {
    await Promise.all(
      Array.from({ length: Math.min(5000, n - i) }, (_, j) =>
        producer.publishLifecycleCommand({
          command_id: randomUUID(),
          command: 'add_note',
          issue_id: noteIds[(i + j) % noteIds.length]!,
          actor: writer.actor,
          origin: 'agent',
          issued_at: issuedAt,
          note: `memory ${i + j}`,
        } satisfies LifecycleCommand),
      ),
    );
    produced = i + Math.min(5000, n - i);
    // decide within reach: the topic, not the bench, holds the backlog
    while (produced - decided > 200_000) await new Promise((r) => setTimeout(r, 1000));
  }
  await waitFor('every command decided', async () => decided >= n, 3_600_000);
  clearInterval(sampler);
  await sampling;
  const end = rss();
  const mib = (x: number) => Math.round(x);
  return {
    commands: n,
    start: mib(start),
    after100k: after100k === undefined ? undefined : mib(after100k),
    end: mib(end),
    max: mib(Math.max(max, end)),
    perSecond: Math.round(n / ((Date.now() - started) / 1000)),
  };
}

const throughput = runs.has('commands')
  ? await measureNotes('commands/s', { connections: 256 })
  : undefined;
let claims: Awaited<ReturnType<typeof claimRace>> | undefined;
if (runs.has('claims')) {
  process.stderr.write(`claims/s: ${duration} s…\n`);
  await claimRace(1);
  claims = await claimRace(duration);
}
let steady: Awaited<ReturnType<typeof steadyNotes>> | undefined;
if (runs.has('rate')) {
  process.stderr.write(`${rate}/s: ${duration} s…\n`);
  await steadyNotes(5); // lifecycle warmed at the rate (JIT, connections), as bench:grouping --rate does
  steady = await steadyNotes(duration);
}
const memory = memoryCommands === undefined ? undefined : await memoryRun(memoryCommands);
clearInterval(sampling);
const rssAtEnd = rss();
rssMax = Math.max(rssMax, rssAtEnd, memory?.max ?? 0);
const loadAtEnd = os.loadavg()[0]!;

const refusedOf = (r: Pick<autocannon.Result, 'non2xx' | 'errors' | 'timeouts'>) =>
  r.non2xx || r.errors || r.timeouts
    ? `${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`
    : '';
const met = (ok: boolean) => (ok ? 'yes' : 'no');
const commandsPerSecond = throughput && throughput['2xx'] / throughput.duration;
const rows = [
  ...(throughput && commandsPerSecond !== undefined
    ? [
        {
          run: 'notes, 256 connections',
          figure: `${commandsPerSecond.toFixed(0)} commands/s decided`,
          target: '>= 2000 commands/s',
          met: met(commandsPerSecond >= 2000),
          'p50 / p99 ms': `${throughput.latency.p50} / ${throughput.latency.p99}`,
          refused: refusedOf(throughput),
          cpu: throughput.cpu,
        },
      ]
    : []),
  ...(claims
    ? [
        {
          run: `claims, ${claimIssues} issues × 10 agents`,
          figure: `${claims.granted.toFixed(0)} claims/s granted, ${claims.decided.toFixed(0)}/s decided (${claims.attempts.toFixed(0)}/s answered 200 or 409)`,
          // claim attempts answered: granted claims are two decide round trips each (claim, release) on
          // one issue at a time, so they measure the round trip, not what the API and decide can take
          target: '>= 500 claims/s answered',
          met: met(claims.attempts >= 500),
          'p50 / p99 ms': '',
          refused: claims.other,
          cpu: claims.cpu,
        },
      ]
    : []),
  ...(steady
    ? [
        {
          run: `notes at ${rate}/s`,
          figure: `p99 ${steady.p99.toFixed(0)} ms (${steady.answeredPerSecond.toFixed(0)}/s answered 200)`,
          target: rate === 500 ? 'p99 < 100 ms' : 'p99 < 100 ms (at 500/s)',
          met: met(steady.p99 < 100),
          'p50 / p99 ms': `${steady.p50.toFixed(0)} / ${steady.p99.toFixed(0)}`,
          refused: refusedOf(steady),
          cpu: steady.cpu,
        },
      ]
    : []),
  ...(memory
    ? [
        {
          run: `${memory.commands} notes onto the topic`,
          figure: `RSS ${memory.start} MiB at the start, ${memory.after100k ?? '-'} after 100,000, ${memory.end} at the end, ${memory.max} max (${memory.perSecond}/s decided)`,
          target: 'flat memory',
          met: met(memory.end <= (memory.after100k ?? memory.start) * 1.1),
          'p50 / p99 ms': '',
          refused: '',
          cpu: '',
        },
      ]
    : []),
];

lifecycle.child.kill('SIGTERM');
await lifecycle.exited;
await producer.close();
const onTopic = (
  await withKafkaAdmin(connections().KAFKA_BROKERS, (admin) =>
    admin.fetchTopicOffsets(ns.topics.lifecycleCommands),
  )
).reduce((n, p) => n + Number(p.high), 0);
await Promise.all([ns.drop(), db.drop()]);

process.stdout.write(
  `${formatTable(rows)}\n\n${onTopic} commands on the topic; lifecycle RSS ${rssAtStart.toFixed(0)} MiB after opening, ${rssAtEnd.toFixed(0)} MiB at the end, ${rssMax.toFixed(0)} MiB at most\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load average ${loadAtStart.toFixed(1)} at the start, ${loadAtEnd.toFixed(1)} at the end, Node ${process.version}, load generator in this process, lifecycle in its own; Kafka, registry and PostgreSQL on the same machine\n`,
);
process.exit(0);
