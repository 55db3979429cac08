import { HEADER } from '@shoal/kafka-runtime';
import { isolatedTopics, kafka, readAll, uniqueName, waitFor } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishEntityChanges } from '../../../services/grouping/test/kit.js';
import {
  agent,
  decideTestKit,
  history,
  issue,
  lifecycleEvents,
  open,
  outcomes,
  publish,
  system,
} from '../../../services/lifecycle/test/decide-support.js';
import { lifecycleCleanups, publishLifecycleCleanups } from '../src/orphans/lifecycle.js';
import { shoalRunners } from './support.js';

// `shoal orphans --service lifecycle` as operators run it, against lifecycle's decide and intake
// consumers on the real stack. Issue 1's key is parked behind an undecodable command, so its
// `delete` (group 1 deleted) waits behind it: a live issue of a deleted group. Issue BIG's project 9
// is deleted. An agent's note for issue 2, never opened, is held past its hold deadline (group 2
// is deleted meanwhile): dead-lettered unknown_reference, its key left parked. Issue 3 is
// deleted; a note naming it is dead-lettered stale_reference and a second one parked behind it.
// Cleanup publishes cleanup_orphans commands decide applies: issues 1 and BIG tombstoned (event
// `deleted`, history kept), keys 2 and 3 expired (the runtime dead-letters the parked note); an
// audit row each.

const kit = decideTestKit();
let stack: Awaited<ReturnType<typeof kit.fresh>>;
const { shoal } = shoalRunners(() => ({
  DATABASE_URL: stack.db.url,
  SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
}));
const rows = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  (await stack.db.pool.query<R>(sql, params)).rows;
const count = async (sql: string) => (await rows<{ n: number }>(sql))[0]!.n;

// the largest id the contracts accept: the report, the command and the audit row must carry it
const BIG = Number.MAX_SAFE_INTEGER;
const heldNote = agent({ command: 'add_note', issue_id: 2, note: 'held' });
const staleNote = agent({ command: 'add_note', issue_id: 3, note: 'stale' });
const parkedNote = agent({ command: 'add_note', issue_id: 3, note: 'parked' });

const orphansOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map(
      (l) =>
        JSON.parse(l) as {
          kind: string;
          id: string;
          issue_id: number;
          entity: string;
          why: string;
        },
    );

const cleanupsOnTopic = async () =>
  (await readAll(stack.ns.topics.lifecycleCommands)).filter((r) => r.key?.startsWith('orphans:'));

beforeAll(async () => {
  stack = await kit.fresh();
  // a hold deadline short enough for the test, long enough to see the note held first
  await kit.start(stack.ns, stack.db, { SHOAL_HOLD_DEADLINE_SECONDS_ISSUE: '6' });
  await kit.intake(stack.ns, stack.db);
  await publish(stack.ns, [open(1), open(3), open(BIG, { project_id: 9 }), heldNote]);
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  await producer.send({
    topic: stack.ns.topics.lifecycleCommands,
    acks: -1,
    messages: [{ key: '1', value: '{"command": not json', headers: { [HEADER.messageId]: 'x1' } }],
  });
  await producer.disconnect();
  await waitFor(
    'issues opened, a note held, key 1 parked',
    async () =>
      (await count('SELECT count(*)::int AS n FROM issues')) === 3 &&
      (await count('SELECT count(*)::int AS n FROM held_messages')) === 1 &&
      (await count("SELECT count(*)::int AS n FROM parked_keys WHERE message_key = '1'")) === 1,
  );
  await publishEntityChanges(stack.ns, [
    ...[1, 2, 3].map((g) => ({
      entity_kind: 'group' as const,
      entity_id: String(g),
      change: 'deleted' as const,
      project_id: 1,
    })),
    { entity_kind: 'project', entity_id: '9', change: 'deleted' },
  ]);
  await waitFor(
    'issue 3 deleted, issue 1 its delete parked, project 9 known deleted',
    async () =>
      (await issue(stack.db, 3))?.deleted === true &&
      (await count("SELECT count(*)::int AS n FROM parked_messages WHERE message_key = '1'")) ===
        1 &&
      (await count(
        'SELECT count(*)::int AS n FROM intake_projects WHERE id = 9 AND deleted_at IS NOT NULL',
      )) === 1,
  );
  await publish(stack.ns, [staleNote, parkedNote]);
  await waitFor(
    'the held note dead-lettered, the note for deleted issue 3 too, the next parked',
    async () =>
      (await count('SELECT count(*)::int AS n FROM held_messages')) === 0 &&
      (await count("SELECT count(*)::int AS n FROM parked_messages WHERE message_key = '3'")) === 1,
  );
}, 120_000);

describe('shoal orphans --service lifecycle', () => {
  it('a note held for an issue never opened is dead-lettered unknown_reference past its hold deadline', async () => {
    expect(
      await rows('SELECT reason, entity, entity_id FROM message_failures WHERE message_id = $1', [
        heldNote.command_id,
      ]),
    ).toEqual([{ reason: 'unknown_reference', entity: 'issue', entity_id: '2' }]);
  });

  it('report lists the issues of a deleted group and project and the keys parked behind deleted issues', () => {
    const { status, stdout } = shoal(['orphans', 'report', '--service', 'lifecycle', '--json']);
    expect(status).toBe(0);
    expect(orphansOf(stdout).map((o) => [o.issue_id, o.kind, o.entity, o.why])).toEqual([
      [1, 'issue', 'group 1', 'group_deleted'],
      [2, 'parked_key', 'issue 2', 'head_entity_deleted'],
      [3, 'parked_key', 'issue 3', 'head_entity_deleted'],
      [BIG, 'issue', 'project 9', 'project_deleted'],
    ]);
  });

  it('cleanup --dry-run shows them as a table, publishes nothing and changes nothing', async () => {
    const dry = shoal(['orphans', 'cleanup', '--service', 'lifecycle', '--dry-run']);
    expect(dry.status).toBe(0);
    expect(dry.stdout).toMatch(
      new RegExp(`${BIG} *│ *issue *│ *${BIG} *│ *project 9 *│ *project_deleted`),
    );
    expect(dry.stderr).toContain('dry run: 4 orphans, nothing published');
    expect(await cleanupsOnTopic()).toEqual([]);
    expect((await issue(stack.db, 1))?.deleted).toBe(false);
  });

  it('cleanup --yes: lifecycle tombstones the issues (event deleted, history kept), the runtime dead-letters the parked note; an audit row each; again: no orphans', async () => {
    const { status, stderr } = shoal([
      'orphans',
      'cleanup',
      '--service',
      'lifecycle',
      '--yes',
      '--actor',
      'ops@test',
      '--reason',
      'groups gone',
    ]);
    expect(status).toBe(0);
    expect(stderr).toContain(
      `4 cleanup commands (4 records) published on ${stack.ns.topics.lifecycleCommands}`,
    );
    await waitFor(
      'issues tombstoned, keys 2 and 3 released, the parked note dead-lettered',
      async () =>
        (await count('SELECT count(*)::int AS n FROM issues WHERE deleted_at IS NULL')) === 0 &&
        (await count(
          "SELECT count(*)::int AS n FROM parked_keys WHERE message_key IN ('2', '3')",
        )) === 0,
      20_000,
    );
    expect((await history(stack.db, 1)).map((h) => [h.version, h.event_type, h.details])).toEqual([
      [1, 'created', {}],
      [2, 'deleted', { orphan_cleanup: { reason: 'groups gone' } }],
    ]);
    expect(
      (await lifecycleEvents(stack.ns, stack.db))
        .filter((e) => e.value.event_type === 'deleted')
        .map((e) => [e.value.issue_id, e.value.actor]),
    ).toEqual([
      [1, 'ops@test'],
      [3, 'lifecycle-intake'],
      [BIG, 'ops@test'],
    ]);
    expect(
      await rows('SELECT reason FROM message_failures WHERE message_id = $1', [
        parkedNote.command_id,
      ]),
    ).toEqual([{ reason: 'parked_expired' }]);
    expect(
      await rows(
        'SELECT issue_id, kind, why, actor, reason FROM orphan_cleanups ORDER BY issue_id',
      ),
    ).toEqual(
      [
        [1, 'issue', 'group_deleted'],
        [2, 'parked_key', 'head_entity_deleted'],
        [3, 'parked_key', 'head_entity_deleted'],
        [BIG, 'issue', 'project_deleted'],
      ].map(([issue_id, kind, why]) => ({
        issue_id,
        kind,
        why,
        actor: 'ops@test',
        reason: 'groups gone',
      })),
    );
    const again = shoal(['orphans', 'cleanup', '--service', 'lifecycle', '--yes']);
    expect(again.status).toBe(0);
    expect(again.stderr).toContain('no orphans');
    expect(await cleanupsOnTopic()).toHaveLength(4);
  }, 90_000);

  it('a cleanup naming records no longer orphans changes nothing and is refused not_orphaned', async () => {
    const [command] = lifecycleCleanups(
      [{ kind: 'issue', id: '1', issue_id: 1, entity: 'group 1', why: 'group_deleted', since: '' }],
      { batchSize: 10, actor: 'ops@test' },
    );
    await publishCleanups(stack.ns.namespace, [command!]);
    await waitFor(
      'refused',
      async () =>
        (await count(
          "SELECT count(*)::int AS n FROM message_rejections WHERE reason = 'not_orphaned' AND detail LIKE 'kept 1 of 1 records%issue 1'",
        )) === 1,
    );
    expect(
      await rows('SELECT outcome, reason FROM lifecycle_commands WHERE command_id = $1', [
        command!.command_id,
      ]),
    ).toEqual([{ outcome: 'ignored', reason: 'not_orphaned' }]);
    expect((await history(stack.db, 1)).map((h) => h.version)).toEqual([1, 2]);
    expect(await count('SELECT count(*)::int AS n FROM orphan_cleanups')).toBe(4);
  });
});

/** Publishes cleanup commands as `shoal orphans cleanup` does, on `namespace`'s topic. */
async function publishCleanups(namespace: string, commands: ReturnType<typeof lifecycleCleanups>) {
  process.env.SHOAL_TOPIC_NAMESPACE = namespace;
  try {
    await publishLifecycleCleanups(commands);
  } finally {
    delete process.env.SHOAL_TOPIC_NAMESPACE;
  }
}

it('a cleanup decided in the batch that already deleted its issue keeps it: no second tombstone, no audit row', async () => {
  // one partition, so the issue's delete and the cleanup (keyed orphans:7) come in one batch, in
  // that order, after the view listed issue 7 (project 9 deleted) at the batch's start
  const ns = await isolatedTopics({ partitions: { lifecycleCommands: 1 } });
  kit.cleanup(() => ns.drop());
  const db = await kit.database();
  const group = uniqueName('decide-');
  const decide = await kit.start(ns, db, {}, group);
  await kit.intake(ns, db);
  await publish(ns, [open(7, { project_id: 9 })]);
  await waitFor('issue 7', async () => (await issue(db, 7)) !== undefined);
  await decide.stop();
  await publishEntityChanges(ns, [{ entity_kind: 'project', entity_id: '9', change: 'deleted' }]);
  await waitFor(
    'project 9 deleted',
    async () =>
      (await db.pool.query('SELECT 1 FROM intake_projects WHERE id = 9 AND deleted_at IS NOT NULL'))
        .rowCount === 1,
  );
  const deletion = system({ command: 'delete', issue_id: 7 });
  const [cleanup] = lifecycleCleanups(
    [
      {
        kind: 'issue',
        id: '7',
        issue_id: 7,
        entity: 'project 9',
        why: 'project_deleted',
        since: '',
      },
    ],
    { batchSize: 10, actor: 'ops@test' },
  );
  await publish(ns, [deletion]);
  await publishCleanups(ns.namespace, [cleanup!]);
  await kit.start(ns, db, {}, group);
  const [deleted, kept] = await outcomes(db, [deletion, cleanup!]);
  expect(deleted).toMatchObject({ outcome: 'applied', version: 2 });
  expect(kept).toMatchObject({
    outcome: 'ignored',
    reason: 'not_orphaned',
    detail: 'kept 1 of 1 records, no longer orphans (restored, or already cleaned): issue 7',
  });
  expect((await history(db, 7)).map((h) => h.event_type)).toEqual(['created', 'deleted']);
  expect((await db.pool.query('SELECT 1 FROM orphan_cleanups')).rowCount).toBe(0);
}, 90_000);
