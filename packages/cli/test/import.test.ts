import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Occurrence } from '@shoal/contracts';
import { createPool, serviceSchema, type Pool } from '@shoal/db';
import { readAll, repoRoot, spawnEntryPoint, uniqueName, waitFor } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { groupingTestKit } from '../../../services/grouping/test/kit.js';
import { bin, closedPort as freePort, shoalRunners } from './support.js';

// `shoal import` as operators run it, against grouping (in this process) on topics and a database
// of its own: messy legacy files are reported record by record (file, line, field) and the rest
// become occurrences and groups; a duplicate joins its canonical's group; importing twice changes
// nothing; a run killed mid-way continues with --resume and imports each report once; with
// lifecycle running, each issue gets its report's fields, notes and status.

const { fresh, start } = groupingTestKit();
let stack: Awaited<ReturnType<typeof fresh>>;
const { shoal, shoalAsync } = shoalRunners(() => ({
  SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
  DATABASE_URL: stack.db.url,
}));

const PROJECT = 41;

const groups = async (project = PROJECT) =>
  (
    await stack.db.pool.query<{ title: string; times_seen: number }>(
      'SELECT title, times_seen::int FROM groups WHERE project_id = $1 ORDER BY title',
      [project],
    )
  ).rows;
const occurrences = async () =>
  (await readAll(stack.ns.topics.occurrences)).map(
    (r) => JSON.parse(r.value!.subarray(5).toString()) as Occurrence,
  );
/** How many occurrences grouping has consumed (its stored offsets). */
const consumed = async () =>
  (
    await stack.db.pool.query<{ n: number }>(
      'SELECT coalesce(sum(next_offset), 0)::int AS n FROM consumer_offsets WHERE topic = $1',
      [stack.ns.topics.occurrences],
    )
  ).rows[0]!.n;
const jsonOut = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

/** The files of the wild: pretty arrays, JSON Lines with broken lines, odd values, other files. */
function messyDirectory(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-import-'));
  mkdirSync(path.join(dir, 'nested'));
  const report = (fields: Record<string, unknown>) => ({
    created_at: '2024-03-01T10:00:00Z',
    ...fields,
  });
  writeFileSync(
    path.join(dir, 'a.json'),
    JSON.stringify(
      [
        report({ id: 1, title: 'Checkout fails', severity: 'Blocker', status: 'In Progress' }),
        report({ id: 2, description: 'no title at all' }),
        report({ id: 3, title: 'Slow search', status: "won't fix", commit_shas: ['abc1234'] }),
      ],
      null,
      2,
    ),
  );
  writeFileSync(
    path.join(dir, 'b.jsonl'),
    [
      JSON.stringify(report({ id: 4, title: 'Checkout fails again', duplicate_of_id: 1 })),
      '{"id": 5, "title": "broken',
      JSON.stringify(report({ id: 6, title: 'Bad date', created_at: 'yesterday' })),
      JSON.stringify(report({ id: 7, title: 'Orphan duplicate', duplicate_of_id: 999 })),
      JSON.stringify(report({ id: 8, title: 'Odd status', status: 'exploded' })),
      JSON.stringify(report({ title: 'No id at all', events: [{ at: 1709287200, kind: 'note' }] })),
    ].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'nested', 'c.json'),
    JSON.stringify(report({ id: 'LEG-9', title: 'Kept fields', customer_tier: 'gold' })),
  );
  writeFileSync(path.join(dir, 'README.txt'), 'not a report');
  return dir;
}

/** Lifecycle's schema, in grouping's database: the import reads both, as in a deployment. */
let lifecycleDb: { pool: Pool };

beforeAll(async () => {
  stack = await fresh();
  await start(stack.ns, stack.db, uniqueName('grouping-'));
  const lifecycle = spawnEntryPoint(
    path.join(repoRoot, 'services/lifecycle/src/main.ts'),
    {
      DATABASE_URL: stack.db.url,
      SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
      SHOAL_CONSUMER_GROUP: uniqueName('lifecycle-'),
      SHOAL_OPS_PORT: String(await freePort()),
      SHOAL_API_PORT: String(await freePort()),
      SHOAL_API_TOKENS: 'importer:import-test-token:read',
      SHOAL_SESSION_TIMEOUT_MS: '6000',
    },
    '"consumer running"',
  );
  lifecycleDb = {
    pool: createPool(stack.db.url, {
      applicationName: 'shoal-test',
      schema: serviceSchema('lifecycle'),
    }),
  };
  await Promise.race([
    lifecycle.ready,
    lifecycle.exited.then((code) => {
      throw new Error(`lifecycle exited (${code}):\n${lifecycle.output.join('\n')}`);
    }),
  ]);
  return async () => {
    lifecycle.child.kill('SIGTERM');
    await lifecycle.exited;
    await lifecycleDb.pool.end();
  };
}, 120_000);

const issueOf = async (title: string) =>
  (
    await lifecycleDb.pool.query<{
      id: string;
      status: string;
      severity: string;
      close_reason: string | null;
      assignee: string | null;
    }>(
      `SELECT i.id::text, i.status, i.severity, i.close_reason, i.assignee
       FROM issues i WHERE i.title = $1`,
      [title],
    )
  ).rows[0];
/** Lifecycle's issues by status as `shoal status` counts them (grouping has no heartbeat: exit 4). */
const statusIssues = (): Record<string, number> =>
  (
    JSON.parse(shoal(['status', '--json']).stdout) as {
      services: { service: string; issues: Record<string, number> | null }[];
    }
  ).services.find((s) => s.service === 'lifecycle')?.issues ?? {};
const notesOf = async (issueId: string) =>
  (
    await lifecycleDb.pool.query<{ note: string }>(
      `SELECT details->>'note' AS note FROM issue_history
       WHERE issue_id = $1 AND details ? 'note' ORDER BY version`,
      [issueId],
    )
  ).rows.map((r) => r.note);

describe('shoal import', () => {
  it('reports each malformed record by file, line and field, imports the rest, and a second import changes nothing', async () => {
    const dir = messyDirectory();
    const dry = shoal(['import', dir, '--project', String(PROJECT), '--dry-run', '--json']);
    expect(dry.status).toBe(3);
    expect(dry.stderr).toContain('dry run: 6 report(s), 4 refused, 1 warning(s)');
    expect(await occurrences()).toEqual([]);

    const first = await shoalAsync(['import', dir, '--project', String(PROJECT), '--json']);
    expect(first.status, first.stderr).toBe(3);
    const at = (file: string) => path.join(dir, file);
    expect(jsonOut(first.stdout)).toEqual([
      {
        file: at('a.json'),
        line: 9,
        field: 'title',
        outcome: 'refused',
        problem: 'required',
      },
      {
        file: at('b.jsonl'),
        line: 2,
        field: '(line)',
        outcome: 'refused',
        problem: expect.any(String),
      },
      {
        file: at('b.jsonl'),
        line: 3,
        field: 'created_at',
        outcome: 'refused',
        problem: '"yesterday" is not a date-time (ISO 8601 or epoch)',
      },
      {
        file: at('b.jsonl'),
        line: 5,
        field: 'status',
        outcome: 'refused',
        problem: expect.stringContaining('"exploded" is not a status'),
      },
      {
        file: at('b.jsonl'),
        line: 4,
        field: 'duplicate_of_id',
        outcome: 'warning',
        problem: 'duplicate of 999, which this import does not hold: imported as its own issue',
      },
    ]);
    expect(first.stderr).toMatch(/6 of 6 report\(s\) published, 4 refused, 1 warning/);

    // the duplicate joined its canonical's group: 6 reports, 5 groups
    await waitFor('the groups', async () => (await groups()).length === 5);
    await waitFor('the duplicate counted', async () =>
      (await groups()).some((g) => g.title === 'Checkout fails' && g.times_seen === 2),
    );
    const sent = await occurrences();
    expect(sent.map((o) => o.fingerprint[0]).sort()).toEqual([
      'legacy:1',
      'legacy:1',
      'legacy:3',
      'legacy:7',
      'legacy:LEG-9',
      expect.stringMatching(/^legacy:sha256:/),
    ]);
    expect(sent.find((o) => o.issue_title === 'Kept fields')?.evidence_data).toEqual({
      legacy: { id: 'LEG-9', customer_tier: 'gold' },
    });
    expect(sent.find((o) => o.subtitle === 'Checkout fails again')).toMatchObject({
      issue_title: 'Checkout fails',
      fingerprint: ['legacy:1'],
    });
    expect(sent.find((o) => o.issue_title === 'Checkout fails' && !o.subtitle)?.level).toBe(
      'fatal',
    );

    const second = await shoalAsync(['import', dir, '--project', String(PROJECT), '--json']);
    expect(second.status).toBe(3);
    // same message ids: grouping's ledger applies each once
    expect(new Set((await occurrences()).map((o) => o.id)).size).toBe(6);
    await waitFor('the second import consumed', async () => (await consumed()) === 12);
    expect(await groups()).toEqual(
      expect.arrayContaining([{ title: 'Checkout fails', times_seen: 2 }]),
    );
    expect((await groups()).every((g) => g.title === 'Checkout fails' || g.times_seen === 1)).toBe(
      true,
    );
  });

  it(
    'a run killed mid-way continues with --resume: every report imported once',
    { timeout: 180_000 },
    async () => {
      const project = PROJECT + 1;
      const dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-import-big-'));
      const total = 6000;
      writeFileSync(
        path.join(dir, 'many.jsonl'),
        Array.from({ length: total }, (_, i) =>
          JSON.stringify({ id: `big-${i}`, title: `Report ${i}`, created_at: 1709287200 + i }),
        ).join('\n'),
      );
      const child = spawn(bin, ['import', dir, '--project', String(project)], {
        cwd: repoRoot,
        env: {
          ...process.env,
          SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
          DATABASE_URL: stack.db.url,
        },
        stdio: 'ignore',
      });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      const checkpointed = async () =>
        (
          await stack.db.pool
            .query<{ n: number }>('SELECT count(*)::int AS n FROM shoal_cli.import_steps')
            .catch(() => ({ rows: [{ n: 0 }] }))
        ).rows[0]!.n;
      const before = await checkpointed();
      await waitFor('a first checkpoint', async () => (await checkpointed()) > before);
      child.kill('SIGKILL');
      await exited;
      const { rows } = await stack.db.pool.query<{ id: string; finished: boolean }>(
        'SELECT id, finished_at IS NOT NULL AS finished FROM shoal_cli.import_runs WHERE project_id = $1',
        [project],
      );
      expect(rows).toEqual([{ id: expect.any(String), finished: false }]);

      const resumed = await shoalAsync(['import', '--resume', rows[0]!.id]);
      expect(resumed.status, resumed.stderr).toBe(0);
      expect(resumed.stderr).toMatch(new RegExp(`${total} of ${total} report\\(s\\) published`));
      await waitFor(
        'every report grouped',
        async () => (await groups(project)).length === total,
        120_000,
      );
      expect((await groups(project)).every((g) => g.times_seen === 1)).toBe(true);
    },
  );

  it('with lifecycle running, each issue gets its report: fields, notes, status; a duplicate adds its notes to its canonical', async () => {
    const project = PROJECT + 2;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-import-issues-'));
    const created_at = '2024-05-01T09:00:00Z';
    writeFileSync(
      path.join(dir, 'reports.jsonl'),
      [
        {
          id: 'R1',
          title: 'Payment declined',
          severity: 'P0',
          status: 'Fixed',
          assignee: 'ana',
          commit_shas: ['9fceb02d0ae598e95dc970b74767f19372d61af8'],
          resolution_notes: 'retry on 502',
          events: [
            { at: '2024-05-02T10:00:00Z', kind: 'comment', actor: 'bo', note: 'seen again' },
          ],
        },
        { id: 'R2', title: 'Payment declined twice', duplicate_of_id: 'R1' },
        { id: 'R3', title: 'Search is slow', status: 'WONTFIX' },
        { id: 'R4', title: 'Login loops', status: 'in progress', description: 'after SSO' },
      ]
        .map((r) => JSON.stringify({ created_at, ...r }))
        .join('\n'),
    );
    const issuesBefore = statusIssues();
    const result = await shoalAsync([
      'import',
      dir,
      '--project',
      String(project),
      '--actor',
      'importer',
    ]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/lifecycle command\(s\) published to 3 issue\(s\)/);

    await waitFor('the imported statuses', async () =>
      (await Promise.all(['Payment declined', 'Search is slow', 'Login loops'].map(issueOf))).every(
        (i) => i !== undefined && i.status !== 'new',
      ),
    );
    const paid = (await issueOf('Payment declined'))!;
    expect(paid).toMatchObject({ status: 'resolved', severity: 'critical', assignee: 'ana' });
    await waitFor('the notes', async () => (await notesOf(paid.id)).length === 2);
    expect(await notesOf(paid.id)).toEqual([
      'comment by bo: seen again',
      'duplicate report R2: Payment declined twice',
    ]);
    expect(await issueOf('Search is slow')).toMatchObject({
      status: 'closed',
      close_reason: 'wont_fix',
    });
    const login = (await issueOf('Login loops'))!;
    expect(login.status).toBe('triaged');
    expect(await notesOf(login.id)).toEqual([
      'after SSO',
      expect.stringContaining('legacy status in_progress: imported triaged'),
    ]);
    const { rows } = await lifecycleDb.pool.query<{ outcome: string; n: number }>(
      `SELECT outcome, count(*)::int AS n FROM lifecycle_commands WHERE actor = 'importer' GROUP BY outcome`,
    );
    expect(rows).toEqual([{ outcome: 'applied', n: expect.any(Number) }]);

    // shoal status counts lifecycle's issues by status, these three among them
    const after = statusIssues();
    expect({
      resolved: after.resolved! - (issuesBefore.resolved ?? 0),
      closed: after.closed! - (issuesBefore.closed ?? 0),
      triaged: after.triaged! - (issuesBefore.triaged ?? 0),
    }).toEqual({ resolved: 1, closed: 1, triaged: 1 });

    // importing again publishes the same commands: each applies once
    const versions = async () =>
      (await lifecycleDb.pool.query<{ v: number }>('SELECT sum(version)::int AS v FROM issues'))
        .rows[0]!.v;
    const before = await versions();
    expect((await shoalAsync(['import', dir, '--project', String(project)])).status).toBe(0);
    const sent = (await readAll(stack.ns.topics.lifecycleCommands)).length;
    await waitFor(
      'lifecycle caught up',
      async () =>
        (
          await lifecycleDb.pool.query<{ n: number }>(
            'SELECT coalesce(sum(next_offset), 0)::int AS n FROM consumer_offsets WHERE topic = $1',
            [stack.ns.topics.lifecycleCommands],
          )
        ).rows[0]!.n === sent,
    );
    expect(await versions()).toBe(before);
  });
});
