import net from 'node:net';
import path from 'node:path';
import {
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  withAdmin,
  type RunningEntryPoint,
} from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { hashOf } from '../src/fingerprints.js';
import { groupingTestKit, occurrence, timesSeen } from './kit.js';
import { groupingMain } from './support.js';

const { fresh, cleanup } = groupingTestKit();

const gatewayMain = path.join(repoRoot, 'services', 'ingest-gateway', 'src', 'main.ts');

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });

/** What one process's `/metrics` says it applied from `topic` (shoal_messages_processed_total). */
async function processedOccurrences(opsPort: number, topic: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  return text
    .split('\n')
    .filter(
      (line) =>
        line.startsWith('shoal_messages_processed_total{') && line.includes(`topic="${topic}"`),
    )
    .reduce((n, line) => n + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Stops a child with SIGTERM (after the test) and reports its exit code. */
function stopLater(child: RunningEntryPoint) {
  cleanup(async () => {
    if (child.child.exitCode === null) child.child.kill('SIGTERM');
    await child.exited;
  });
}

describe('the pipeline, as deployed', () => {
  it('5,000 occurrences over 50 fingerprints through the gateway and the producer at once, two grouping processes: 50 groups with exact counts, seen times and gap-free short ids', async () => {
    const { ns, producer, db } = await fresh();
    const group = uniqueName('grouping-');
    const serviceEnv = {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_CONSUMER_GROUP: group,
      SHOAL_SESSION_TIMEOUT_MS: '6000',
    };
    const opsPorts = [await freePort(), await freePort()];
    const groupers = opsPorts.map((port) =>
      spawnEntryPoint(
        groupingMain,
        { ...serviceEnv, SHOAL_OPS_PORT: String(port) },
        '"consumer running"',
      ),
    );
    const port = await freePort();
    const gateway = spawnEntryPoint(
      gatewayMain,
      { ...serviceEnv, SHOAL_GATEWAY_PORT: String(port), SHOAL_INGEST_TOKENS: 'pipeline-token' },
      'Server listening',
    );
    for (const child of [...groupers, gateway]) stopLater(child);
    await Promise.all([...groupers, gateway].map((c) => c.ready));
    await waitFor('both processes in the group', async () => {
      const { groups } = await withAdmin((admin) => admin.describeGroups([group]));
      return groups[0]?.state === 'Stable' && groups[0].members.length === 2;
    });

    // fingerprint k lives in project 1 + k % 2: 25 groups per project
    const values = Array.from({ length: 5000 }, (_, i) =>
      occurrence(i, `pipeline-${i % 50}`, 1 + ((i % 50) % 2)),
    );
    const viaGateway = values.filter((_, i) => i % 2 === 0);
    const viaProducer = values.filter((_, i) => i % 2 === 1);
    const posts = Array.from({ length: viaGateway.length / 100 }, (_, i) =>
      fetch(`http://127.0.0.1:${port}/v1/occurrences`, {
        method: 'POST',
        headers: { authorization: 'Bearer pipeline-token', 'content-type': 'application/json' },
        body: JSON.stringify(viaGateway.slice(i * 100, (i + 1) * 100)),
      }).then(async (response) => {
        expect(response.status).toBe(202);
        return ((await response.json()) as { ids: string[] }).ids;
      }),
    );
    const [accepted] = await Promise.all([
      Promise.all(posts),
      Promise.all(viaProducer.map((v) => producer.publishOccurrence(v))),
    ]);
    expect(accepted.flat().sort()).toEqual(viaGateway.map((v) => v.id).sort());

    await waitFor('every occurrence grouped', async () => (await timesSeen(db)) === 5000, 120_000);
    const { rows } = await db.pool.query<{
      project_id: number;
      primary_hash: string;
      times_seen: number;
      first_seen: Date;
      last_seen: Date;
      short_number: number;
      title: string;
    }>(
      'SELECT project_id, primary_hash, times_seen::int, first_seen, last_seen, short_number::int, title FROM groups ORDER BY project_id, short_number',
    );
    expect(rows).toHaveLength(50);
    for (const r of rows) {
      const mine = values.filter(
        (v) => v.project_id === r.project_id && hashOf(v.fingerprint[0]) === r.primary_hash,
      );
      expect(mine).toHaveLength(100);
      expect(r.times_seen).toBe(100);
      expect(r.first_seen.getTime()).toBe(Math.min(...mine.map((v) => v.detection_time)) * 1000);
      expect(r.last_seen.getTime()).toBe(Math.max(...mine.map((v) => v.detection_time)) * 1000);
      expect(r.title).toBe(mine.at(-1)!.issue_title); // the latest occurrence's
    }
    for (const project of [1, 2])
      expect(rows.filter((r) => r.project_id === project).map((r) => r.short_number)).toEqual(
        Array.from({ length: 25 }, (_, i) => i + 1),
      );
    // both processes took part: each applied some occurrences (its own metric), together each once
    const appliedBy = await Promise.all(
      opsPorts.map((port) => processedOccurrences(port, ns.topics.occurrences)),
    );
    for (const n of appliedBy) expect(n).toBeGreaterThan(0);
    expect(appliedBy[0]! + appliedBy[1]!).toBe(5000);
    const applied = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM processed_messages',
    );
    expect(applied.rows[0]!.n).toBe(5000);
    // and both stop cleanly
    for (const child of groupers) {
      expect(child.output.some((line) => line.includes('"partitions assigned"'))).toBe(true);
      child.child.kill('SIGTERM');
      expect(await child.exited).toBe(0);
    }
  });
});
