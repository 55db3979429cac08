import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Occurrence } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codecFor, encodeAll, occurrence, produceRaw } from '../../kafka-runtime/test/support.js';
import { groupingDatabase } from '../../../services/grouping/test/support.js';
import { publishEntityChanges } from '../../../services/grouping/test/kit.js';
import { bin, shoalRunners } from './support.js';

// `shoal rebuild grouping` as operators run it (the workspace bin, a process), against grouping
// run for real: its main (with the chaos run's self-kill points) SIGKILLed six times while
// occurrences flow, then left running. The log holds what makes a rebuild hard: a detector deleted
// first (its occurrences dead-lettered), one announced partway (its occurrences held until then),
// and project 3 deleted after its occurrences were applied, then named again (dead-lettered): a
// rebuild that read the entity changes first would dead-letter project 3's earlier ones too. And a
// group deleted by its live id, then its fingerprint seen again (a new group with the same hash):
// the rebuild must delete the same group, which it can since its groups take the live ids.

const chaosMain = path.join(repoRoot, 'stress/chaos/grouping-main.ts');
const MESSAGES = 3000;
const DELETED_DETECTOR = 99;
const LATE_DETECTOR = 7;
const seed = uniqueName('rebuild-');
const group = uniqueName('shoal.grouping.test-');

let ns: IsolatedTopics;
let db: IsolatedDatabase;
let live: RunningEntryPoint | undefined;
const children: RunningEntryPoint[] = [];
const { shoal } = shoalRunners(() => ({
  DATABASE_URL: db.url,
  SHOAL_TOPIC_NAMESPACE: ns.namespace,
  SHOAL_CONSUMER_GROUP: group,
}));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const startGrouping = (env: NodeJS.ProcessEnv = {}) => {
  const child = spawnEntryPoint(
    chaosMain,
    {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_CONSUMER_GROUP: group,
      SHOAL_SESSION_TIMEOUT_MS: '2000',
      SHOAL_GROUP_ACTIVITY_SECONDS: '0.3',
      SHOAL_MAX_BATCH_SIZE: String(50 + Math.floor(Math.random() * 300)),
      ...env,
    },
    '"partitions assigned"',
  );
  children.push(child);
  return child;
};
const one = async <T>(sql: string, params: unknown[] = []) =>
  (await db.pool.query(sql, params)).rows[0] as T;
const timesSeen = async () =>
  (await one<{ n: number }>('SELECT coalesce(sum(times_seen), 0)::int AS n FROM grouping.groups'))
    .n;
const send = async (values: Occurrence[]) =>
  produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values));
const linesOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const summaryOf = (stdout: string) => linesOf(stdout).find((l) => l.type === 'summary')!;

let applied = 0;

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 4, statusChanges: 2 } });
  db = await isolatedDatabase(groupingDatabase);
  await publishEntityChanges(ns, [
    { entity_kind: 'detector', entity_id: String(DELETED_DETECTOR), change: 'deleted' },
  ]);
  // occurrence i: project 1 + i % 3, one of 20 fingerprints; every 97th names the deleted
  // detector, every 41st from 200 on the late one
  const names = (i: number) =>
    i % 97 === 96 ? DELETED_DETECTOR : i >= 200 && i % 41 === 40 ? LATE_DETECTOR : undefined;
  const values = Array.from({ length: MESSAGES }, (_, i) => {
    const o = occurrence(i, { projects: 3, fingerprints: 20, seed });
    const detector = names(i);
    return detector ? { ...o, shoal: { detector_id: detector } } : o;
  });
  const stale = values.filter((_, i) => names(i) === DELETED_DETECTOR).length;
  // project 3's occurrences after its deletion are dead-lettered
  const afterDeletion = Array.from({ length: 30 }, (_, i) => ({
    ...occurrence(MESSAGES + i, { projects: 1, fingerprints: 5, seed: `${seed}-late` }),
    project_id: 3,
  }));

  const publishing = (async () => {
    for (let s = 0; s < 12; s++) {
      await send(values.slice((s * MESSAGES) / 12, ((s + 1) * MESSAGES) / 12));
      if (s === 6)
        await publishEntityChanges(ns, [
          {
            entity_kind: 'detector',
            entity_id: String(LATE_DETECTOR),
            change: 'created',
            project_id: 1,
          },
        ]);
      await sleep(700);
    }
  })();
  for (let k = 0; k < 6; k++) {
    const selfKill = k % 3 === 2;
    const child = startGrouping(selfKill ? { SHOAL_CRASH_AT: 'consumer:before-commit:2' } : {});
    await Promise.race([child.ready, child.exited]);
    if (!selfKill || !(await Promise.race([child.exited.then(() => true), sleep(6000)]))) {
      await sleep(200 + Math.random() * 1200);
      child.child.kill('SIGKILL');
    }
    await child.exited;
  }
  await publishing;
  live = startGrouping();
  const expected = MESSAGES - stale;
  await waitFor(
    'grouping to apply every occurrence',
    async () => (await timesSeen()) === expected,
    120_000,
  );
  await publishEntityChanges(ns, [{ entity_kind: 'project', entity_id: '3', change: 'deleted' }]);
  await waitFor(
    'the deletion of project 3',
    async () =>
      (
        await one<{ n: number }>(
          'SELECT count(*)::int AS n FROM grouping.projects WHERE id = 3 AND deleted_at IS NOT NULL',
        )
      ).n === 1,
  );
  await send(afterDeletion);
  // a group deleted by its id (the live one), then its fingerprint seen again: a new group
  const { id: deleted } = await one<{ id: string }>(
    'SELECT min(id)::text AS id FROM grouping.groups WHERE project_id = 1',
  );
  await publishEntityChanges(ns, [
    { entity_kind: 'group', entity_id: deleted, change: 'deleted', project_id: 1 },
  ]);
  await waitFor(
    'the group deleted',
    async () =>
      (
        await one<{ n: number }>(
          'SELECT count(*)::int AS n FROM grouping.groups WHERE deleted_at IS NOT NULL',
        )
      ).n === 1,
  );
  await send(
    Array.from({ length: 20 }, (_, i) =>
      occurrence(i, { projects: 1, fingerprints: 20, seed: `${seed}-again` }),
    ),
  );
  await waitFor('the fingerprints seen again', async () => (await timesSeen()) === expected + 20);

  await waitFor(
    'the dead letters',
    async () =>
      (await one<{ n: number }>('SELECT count(*)::int AS n FROM grouping.message_failures')).n ===
      stale + afterDeletion.length,
    60_000,
  );
  const unsettled = () =>
    one<{ unpublished: number; unreported: number }>(
      `SELECT (SELECT count(*) FROM grouping.outbox WHERE published_at IS NULL)::int AS unpublished,
              (SELECT count(*) FROM grouping.groups WHERE times_seen <> reported_times_seen)::int AS unreported`,
    );
  await waitFor(
    'every event published and reported',
    async () => {
      const { unpublished, unreported } = await unsettled();
      return unpublished + unreported === 0;
    },
    120_000,
  ).catch(async (error: Error) => {
    throw new Error(
      `${error.message}: ${JSON.stringify(await unsettled())}; live: ${live?.output.slice(-5).join('\n')}`,
    );
  });
  applied = expected + 20;
}, 300_000);

afterAll(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await db?.drop();
  await ns?.drop();
});

describe('shoal rebuild grouping', () => {
  it('after a run with SIGKILLs, rebuilds from the log with an empty diff, while the service runs', () => {
    expect(applied).toBeGreaterThan(0);
    const { status, stdout, stderr } = shoal(['rebuild', 'grouping', '--json']);
    expect(stderr, stdout.slice(0, 3000)).toContain('no differences');
    expect(status).toBe(0);
    const summary = summaryOf(stdout);
    expect(summary).toMatchObject({
      type: 'summary',
      differences: 0,
      swapped: false,
      rebuilt: 'grouping_rebuild',
    });
    expect(linesOf(stdout).filter((l) => l.type === 'difference')).toEqual([]);
  }, 180_000);

  it('a corrupted live row is in the diff (exit 3) and blocks --swap', async () => {
    const { id } = await one<{ id: string }>('SELECT min(id)::text AS id FROM grouping.groups');
    const { title } = await one<{ title: string }>(
      'SELECT title FROM grouping.groups WHERE id = $1',
      [id],
    );
    await db.pool.query(`UPDATE grouping.groups SET title = 'corrupted' WHERE id = $1`, [id]);
    try {
      const { status, stdout, stderr } = shoal([
        'rebuild',
        'grouping',
        '--swap',
        '--yes',
        '--json',
      ]);
      expect(status).toBe(3);
      expect(stderr).toContain('swap refused: the diff is not empty');
      const differences = linesOf(stdout).filter((l) => l.type === 'difference');
      expect(differences).toEqual([
        expect.objectContaining({
          table: 'groups',
          difference: 'different',
          live: { title: 'corrupted' },
          rebuilt: { title },
        }),
      ]);
      expect(summaryOf(stdout)).toMatchObject({ differences: 1, swapped: false });
      const { n } = await one<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'grouping_replaced'`,
      );
      expect(n).toBe(0);
      // the table a human reads names it too
      const human = shoal(['rebuild', 'grouping']);
      expect(human.status).toBe(3);
      expect(human.stdout).toContain('corrupted');
    } finally {
      await db.pool.query('UPDATE grouping.groups SET title = $2 WHERE id = $1', [id, title]);
    }
  }, 240_000);

  it('--swap on an empty diff: the rebuilt schema takes the live ids, and the running service goes on in it', async () => {
    const before = (
      await db.pool.query<{ key: string; id: string; short_id: string }>(
        `SELECT project_id || ':' || primary_hash AS key, id::text, short_id FROM grouping.groups ORDER BY 1, 2`,
      )
    ).rows;
    const { status, stdout, stderr } = shoal([
      'rebuild',
      'grouping',
      '--swap',
      '--yes',
      '--reason',
      'test',
      '--json',
    ]);
    expect(stderr, stdout.slice(0, 3000)).toContain('swapped');
    expect(status).toBe(0);
    expect(summaryOf(stdout)).toMatchObject({ swapped: true, replaced: 'grouping_replaced' });
    const after = (
      await db.pool.query<{ key: string; id: string; short_id: string }>(
        `SELECT project_id || ':' || primary_hash AS key, id::text, short_id FROM grouping.groups ORDER BY 1, 2`,
      )
    ).rows;
    expect(after).toEqual(before);
    const { n: replacedGroups } = await one<{ n: number }>(
      'SELECT count(*)::int AS n FROM grouping_replaced.groups',
    );
    expect(replacedGroups).toBe(before.length);
    const swaps = await one<{ actor: string; reason: string }>(
      'SELECT actor, reason FROM shoal_cli.rebuild_swaps',
    );
    expect(swaps.reason).toBe('test');
    // the live service, still running, applies new occurrences in the swapped-in schema: a new
    // group gets an id past every live one, an old group counts on
    const maxId = Math.max(...before.map((g) => Number(g.id)));
    await send([
      occurrence(0, { projects: 1, fingerprints: 1, seed: `${seed}-after-swap` }),
      {
        ...occurrence(1, { projects: 1, fingerprints: 1, seed: `${seed}-new` }),
        fingerprint: ['brand-new'],
      },
    ]);
    await waitFor(
      'the new group',
      async () =>
        (
          await one<{ n: number }>(
            `SELECT count(*)::int AS n FROM grouping.groups WHERE primary_hash IS NOT NULL AND id > $1`,
            [maxId],
          )
        ).n === 1,
    );
    expect(await timesSeen()).toBe(applied + 2);
    expect(live?.child.exitCode).toBeNull();
  }, 240_000);

  it('a service without a rebuild declaration exits 4; --swap without a terminal needs --yes (2); --dry-run starts nothing', async () => {
    const unknown = shoal(['rebuild', 'ingest-gateway']);
    expect(unknown.status).toBe(4);
    expect(unknown.stderr).toContain('declares no rebuild');
    const noYes = shoal(['rebuild', 'grouping', '--swap']);
    expect(noYes.status).toBe(2);
    expect(noYes.stderr).toContain('--yes is required');
    const dry = shoal(['rebuild', 'grouping', '--dry-run', '--json']);
    expect(dry.status).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({
      type: 'plan',
      dryRun: true,
      shadow: 'grouping_rebuild',
      stopAt: { [ns.topics.occurrences]: expect.any(Object) },
    });
    const { n } = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'grouping_rebuild'`,
    );
    expect(n).toBe(0);
  });

  it('a rebuild whose service cannot start exits 1 with its last lines', () => {
    const { status, stderr } = shoal(['rebuild', 'grouping'], { SHOAL_MAX_BATCH_SIZE: '0' });
    expect(status).toBe(1);
    expect(stderr).toContain('in rebuild mode exited');
    expect(stderr).toContain('SHOAL_MAX_BATCH_SIZE');
  }, 120_000);

  it('interrupted (Ctrl-C), it exits 130 and stops the service it started', async () => {
    const cli = spawn(bin, ['rebuild', 'grouping'], {
      cwd: repoRoot,
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        SHOAL_TOPIC_NAMESPACE: ns.namespace,
        SHOAL_CONSUMER_GROUP: group,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => cli.on('exit', (code) => resolve(code)));
    // the service in rebuild mode: a process of ours whose environment names this test's database
    const rebuilding = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            const environ = readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
            return (
              environ.includes('SHOAL_REBUILD_SCHEMA=grouping_rebuild') &&
              environ.includes(`DATABASE_URL=${db.url}`)
            );
          } catch {
            return false;
          }
        });
    await waitFor('the service in rebuild mode', async () => rebuilding().length > 0);
    cli.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toContain('interrupted');
    await waitFor(
      'the service in rebuild mode to stop',
      async () => rebuilding().length === 0,
      20_000,
    );
  }, 60_000);
});
