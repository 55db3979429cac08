import type { StatusChange } from '@shoal/contracts';
import { readAll, uniqueName, waitFor } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  groupingTestKit,
  occurrence,
  publishEntityChanges,
  uniqueUuid,
} from '../../../services/grouping/test/kit.js';
import { shoalRunners } from './support.js';

// `shoal orphans --service grouping` as operators run it, against the grouping service on the real
// stack. Project 31 (deleted) leaves a live group, an occurrence held for the noise threshold and one
// held for its environment never announced; in project 32 a status change naming deleted detector
// 4302 heads its key, dead-lettered, and a second one is parked behind it. Cleanup publishes
// commands grouping applies: the group deleted, the held occurrence removed, the held message and
// the parked one dead-lettered by the runtime; an audit row each.

const NOISY = 1006;
const { fresh, start } = groupingTestKit();
let stack: Awaited<ReturnType<typeof fresh>>;
const { shoal } = shoalRunners(() => ({
  DATABASE_URL: stack.db.url,
  SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
}));
const rows = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  (await stack.db.pool.query<R>(sql, params)).rows;

const resolve = (fingerprint: string): StatusChange & { id: string } => ({
  id: uniqueUuid(),
  project_id: 32,
  fingerprint: [fingerprint],
  new_status: 1,
  new_substatus: null,
  detector_id: 4302,
});
const parkedChange = resolve('parked');

const orphansOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { kind: string; id: string; entity: string; why: string });

beforeAll(async () => {
  stack = await fresh();
  await start(stack.ns, stack.db, uniqueName('grouping-'), {
    env: { SHOAL_REFERENCE_ENVIRONMENT: 'announce' },
    issueTypes: new Map([[NOISY, { noise: { threshold: 5, windowSeconds: 3600 } }]]),
  });
  await publishEntityChanges(stack.ns, [
    { entity_kind: 'detector', entity_id: '4302', change: 'deleted', project_id: 32 },
  ]);
  await waitFor(
    'the detector tombstone',
    async () => (await rows('SELECT 1 FROM detectors WHERE id = 4302')).length === 1,
  );
  const { producer } = stack;
  await producer.publishOccurrence(occurrence(1, 'live-group', 31));
  await producer.publishOccurrence(occurrence(2, 'noisy', 31, { type: NOISY }));
  await producer.publishOccurrence(
    occurrence(3, 'in-prod', 31, { shoal: { environment: 'prod' } }),
  );
  await producer.publishStatusChange(resolve('parked'));
  await producer.publishStatusChange(parkedChange);
  await waitFor('a group, a held occurrence, a held message, a parked one', async () => {
    const [n] = await rows<{ g: number; ho: number; hm: number; p: number }>(
      `SELECT (SELECT count(*) FROM groups)::int AS g, (SELECT count(*) FROM held_occurrences)::int AS ho,
              (SELECT count(*) FROM held_messages)::int AS hm, (SELECT count(*) FROM parked_messages)::int AS p`,
    );
    return n!.g === 1 && n!.ho === 1 && n!.hm === 1 && n!.p === 1;
  });
  await publishEntityChanges(stack.ns, [
    { entity_kind: 'project', entity_id: '31', change: 'deleted' },
  ]);
  await waitFor(
    'project 31 deleted',
    async () =>
      (await rows('SELECT 1 FROM projects WHERE id = 31 AND deleted_at IS NOT NULL')).length === 1,
  );
}, 120_000);

describe('shoal orphans --service grouping', () => {
  it('report lists the group, the held occurrence and message of the deleted project, and the key parked behind a deleted detector', () => {
    const { status, stdout } = shoal(['orphans', 'report', '--service', 'grouping', '--json']);
    expect(status).toBe(0);
    expect(orphansOf(stdout).map((o) => [o.kind, o.entity, o.why])).toEqual([
      ['group', 'project 31', 'project_deleted'],
      ['held_message', 'environment 31:prod', 'entity_deleted'],
      ['held_occurrence', 'project 31', 'project_deleted'],
      ['parked_key', 'detector 4302', 'head_entity_deleted'],
    ]);
    const human = shoal(['orphans', 'report', '--service', 'grouping']);
    expect(human.stdout).toContain('head_entity_deleted');
  });

  it('cleanup --dry-run publishes nothing; a bad --batch-size is bad usage', async () => {
    const dry = shoal(['orphans', 'cleanup', '--service', 'grouping', '--dry-run']);
    expect(dry.status).toBe(0);
    expect(dry.stderr).toContain('dry run: 4 orphans, nothing published');
    const zero = shoal([
      'orphans',
      'cleanup',
      '--service',
      'grouping',
      '--yes',
      '--batch-size',
      '0',
    ]);
    expect(zero.status).toBe(2);
    expect(shoal(['orphans', 'report', '--service', 'nobody']).status).toBe(2);
    expect(await readAll(stack.ns.topics.groupingCommands)).toEqual([]);
  });

  it('a command naming a record that is no orphan is refused, and the record kept', async () => {
    await stack.producer.publishOccurrence(occurrence(4, 'alive', 32));
    await waitFor(
      'a live group',
      async () => (await rows('SELECT 1 FROM groups WHERE project_id = 32')).length === 1,
    );
    const [alive] = await rows<{ id: string }>('SELECT id::text FROM groups WHERE project_id = 32');
    const { publishCommands } = await import('../src/publish.js');
    const { groupingCleanups } = await import('../src/orphans/grouping.js');
    process.env.SHOAL_TOPIC_NAMESPACE = stack.ns.namespace;
    try {
      const [command] = groupingCleanups(
        [{ kind: 'group', id: alive!.id, entity: 'project 32', why: 'project_deleted', since: '' }],
        { batchSize: 10, actor: 'ops@test' },
      );
      await publishCommands('groupingCommands', [
        { key: 'group', commandId: command!.command_id, value: command! },
      ]);
    } finally {
      delete process.env.SHOAL_TOPIC_NAMESPACE;
    }
    await waitFor(
      'refused',
      async () =>
        (
          await rows(
            "SELECT 1 FROM message_rejections WHERE reason = 'not_orphaned' AND detail LIKE 'kept 1 of 1 group records%'",
          )
        ).length === 1,
    );
    expect(
      await rows('SELECT 1 FROM groups WHERE project_id = 32 AND deleted_at IS NULL'),
    ).toHaveLength(1);
    expect(await rows('SELECT 1 FROM orphan_cleanups')).toEqual([]);
  });

  it('cleanup --yes: grouping cleans each, an audit row each; the runtime dead-letters the held and parked messages', async () => {
    const { status, stderr } = shoal([
      'orphans',
      'cleanup',
      '--service',
      'grouping',
      '--yes',
      '--actor',
      'ops@test',
      '--reason',
      'project 31 gone',
    ]);
    expect(status).toBe(0);
    expect(stderr).toContain(
      `4 cleanup commands (4 records) published on ${stack.ns.topics.groupingCommands}`,
    );
    await waitFor(
      'held and parked messages dead-lettered',
      async () =>
        (await rows('SELECT 1 FROM held_messages')).length === 0 &&
        (await rows('SELECT 1 FROM parked_messages')).length === 0,
      60_000,
    );
    expect(
      await rows('SELECT deleted_at IS NOT NULL AS deleted FROM groups WHERE project_id = 31'),
    ).toEqual([{ deleted: true }]);
    expect(await rows('SELECT 1 FROM held_occurrences')).toEqual([]);
    expect(
      await rows(
        "SELECT reason, entity FROM message_failures WHERE reason IN ('parked_expired') OR entity = 'project' ORDER BY reason",
      ),
    ).toEqual([
      { reason: 'parked_expired', entity: null },
      { reason: 'stale_reference', entity: 'project' },
    ]);
    expect(
      await rows(
        'SELECT kind, why, actor, reason, record IS NOT NULL AS kept FROM orphan_cleanups ORDER BY kind',
      ),
    ).toEqual(
      [
        ['group', 'project_deleted'],
        ['held_message', 'entity_deleted'],
        ['held_occurrence', 'project_deleted'],
        ['parked_key', 'head_entity_deleted'],
      ].map(([kind, why]) => ({
        kind,
        why,
        actor: 'ops@test',
        reason: 'project 31 gone',
        kept: true,
      })),
    );
    expect(shoal(['orphans', 'report', '--service', 'grouping']).stderr).toContain('no orphans');
  }, 120_000);
});
