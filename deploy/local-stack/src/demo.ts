import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { schemasDir, type Occurrence } from '@shoal/contracts';
import type { Pool } from '@shoal/db';
import { createProducer } from '@shoal/producer';
import { waitUntil } from './processes.js';

const scenarios = [
  {
    project: 7,
    fingerprint: 'checkout:TypeError:total',
    title: "TypeError: Cannot read properties of undefined (reading 'total')",
    culprit: 'computeTotal(cart.ts)',
    level: 'error',
    env: 'production',
  },
  {
    project: 7,
    fingerprint: 'checkout:Timeout:payments',
    title: 'TimeoutError: payments-api did not answer in 5000 ms',
    culprit: 'charge(payments.ts)',
    level: 'error',
    env: 'production',
  },
  {
    project: 7,
    fingerprint: 'search:SlowQuery',
    title: 'Slow DB query: SELECT … FROM products WHERE …',
    culprit: '/api/search',
    level: 'warning',
    env: 'staging',
  },
  {
    project: 8,
    fingerprint: 'worker:OOM',
    title: 'Worker killed: out of memory',
    culprit: 'image-resize',
    level: 'fatal',
    env: 'production',
  },
  {
    project: 8,
    fingerprint: 'auth:InvalidToken',
    title: 'InvalidTokenError: jwt expired',
    culprit: 'verify(auth.ts)',
    level: 'info',
    env: 'production',
  },
] as const;

function sample(i: number): Occurrence {
  const s = scenarios[i % scenarios.length]!;
  return {
    id: randomUUID(),
    project_id: s.project,
    fingerprint: [s.fingerprint],
    issue_title: s.title,
    culprit: s.culprit,
    level: s.level,
    type: 1,
    detection_time: Date.now() / 1000 - (400 - i),
    event_id: randomUUID().replace(/-/g, ''),
    event: {
      event_id: randomUUID().replace(/-/g, ''),
      project_id: s.project,
      platform: 'node',
      release: `shop@2.${14 + (i % 3)}.0`,
      environment: s.env,
    },
  };
}

const timesSeen = async (pool: Pool) =>
  (await pool.query<{ n: string }>('SELECT coalesce(sum(times_seen), 0) AS n FROM groups')).rows[0]!
    .n;

/**
 * Sample traffic: 300 occurrences through the gateway (arrays of 50), 100 through the producer package,
 * a Sentry issue-platform occurrence unchanged, and a status change resolving one group; then the
 * group events emitted so far, by type, and the groups.
 */
export async function runDemo(options: {
  gatewayUrl: string;
  token: string;
  brokers: string[];
  registryUrl: string;
  namespace: string;
  /** On grouping's schema, where its tables are. */
  pool: Pool;
  log: (line: string) => void;
}) {
  const before = Number(await timesSeen(options.pool));
  const viaGateway = Array.from({ length: 300 }, (_, i) => sample(i));
  for (let i = 0; i < viaGateway.length; i += 50) {
    const response = await fetch(`${options.gatewayUrl}/v1/occurrences`, {
      method: 'POST',
      headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(viaGateway.slice(i, i + 50)),
    });
    if (response.status !== 202)
      throw new Error(`gateway answered ${response.status}: ${await response.text()}`);
  }
  options.log('      300 occurrences posted to the gateway');
  const producer = createProducer({
    brokers: options.brokers,
    registryUrl: options.registryUrl,
    namespace: options.namespace,
  });
  const sentry = JSON.parse(
    fs.readFileSync(
      path.join(schemasDir, 'examples', 'occurrence.sentry-monitor-failure.json'),
      'utf8',
    ),
  ) as Occurrence;
  await Promise.all([
    ...Array.from({ length: 100 }, (_, i) => producer.publishOccurrence(sample(300 + i))),
    producer.publishOccurrence({ ...sentry, id: randomUUID() }),
  ]);
  options.log('      101 occurrences published with @shoal/producer');

  const waitFor = (what: string, done: () => Promise<boolean>) =>
    waitUntil(what, done, 60_000).catch((error: Error) => {
      throw new Error(`${error.message}; see .cache/stack/services/grouping.log`);
    });
  await waitFor(
    'grouping all 401 occurrences',
    async () => Number(await timesSeen(options.pool)) >= before + 401,
  );
  // status changes travel on their own topic: one sent before its group exists is held until the
  // group's first occurrence is grouped; sent after, the demo shows the resolution at once
  await producer.publishStatusChange({
    project_id: 8,
    fingerprint: ['auth:InvalidToken'],
    new_status: 1,
    new_substatus: null,
  });
  await producer.close();
  options.log('      1 status change published: resolve auth:InvalidToken');
  await waitFor(
    'the resolution',
    async () =>
      (
        await options.pool.query(
          `SELECT 1 FROM groups WHERE status = 'resolved' AND project_id = 8`,
        )
      ).rowCount === 1,
  );
  // group events come at the grain downstream needs: no per-occurrence event on an unresolved group,
  // activity from grouping's flush (every 5 s) once it has reported every group
  await waitFor(
    'the group_activity flush',
    async () =>
      (await options.pool.query('SELECT 1 FROM groups WHERE times_seen <> reported_times_seen'))
        .rowCount === 0,
  );
  const { rows: events } = await options.pool.query<{ type: string; n: number }>(
    `SELECT payload->>'event_type' AS type, count(*)::int AS n FROM outbox_events
     WHERE topic LIKE '%group-events%' GROUP BY 1 ORDER BY 1`,
  );
  options.log(
    `      group events so far: ${events.map((e) => `${e.type} ${e.n}`).join(', ')} (outbox, published by the relay)`,
  );
  const { rows } = await options.pool.query(
    `SELECT g.short_id, g.status, g.level, g.times_seen::int AS seen, left(g.title, 60) AS title,
            coalesce(string_agg(e.environment, ',' ORDER BY e.environment), '') AS environments,
            to_char(g.last_seen, 'HH24:MI:SS') AS last_seen
     FROM groups g LEFT JOIN group_environments e ON e.group_id = g.id
     GROUP BY g.id ORDER BY g.project_id, g.short_number`,
  );
  return rows as Record<string, unknown>[];
}
