import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EntityChange, StatusChange } from '@shoal/contracts';
import { readAll, uniqueName, waitFor } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { groupingTestKit, occurrence, uniqueUuid } from '../../../services/grouping/test/kit.js';
import { closedPort, shoalRunners } from './support.js';

// `shoal entities` as operators run it, against the grouping service (in this process) on topics
// and a database of its own: a status change naming detector 77, never announced, is held (and
// `shoal status` shows it); five seconds later `shoal entities announce detector 77` publishes the
// announcement and the held change applies.

const { fresh, start } = groupingTestKit();
let stack: Awaited<ReturnType<typeof fresh>>;
const { shoal } = shoalRunners(() => ({ SHOAL_TOPIC_NAMESPACE: stack.ns.namespace }));

const PROJECT = 31;

const rows = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  (await stack.db.pool.query<R>(sql, params)).rows;
/** The status of the project's group (it has one). */
const groupStatus = async () =>
  (await rows<{ status: string }>('SELECT status FROM groups WHERE project_id = $1', [PROJECT]))[0]
    ?.status;
const heldFor = async (entity: string, id: string) =>
  (await rows('SELECT 1 FROM held_messages WHERE entity = $1 AND entity_id = $2', [entity, id]))
    .length;
const entityChanges = async () =>
  (await readAll(stack.ns.topics.entityChanges)).map((r) => ({
    key: r.key,
    value: JSON.parse(r.value!.subarray(5).toString()) as EntityChange,
  }));

beforeAll(async () => {
  stack = await fresh();
  await start(stack.ns, stack.db, uniqueName('grouping-'));
}, 120_000);

describe('shoal entities', () => {
  it('announce detector 77 five seconds after a status change naming it: the held change applies', async () => {
    await stack.producer.publishOccurrence(occurrence(1, 'detector-77', PROJECT));
    await waitFor('a group', async () => (await groupStatus()) === 'unresolved');
    const change: StatusChange = {
      id: uniqueUuid(),
      project_id: PROJECT,
      fingerprint: ['detector-77'],
      new_status: 1,
      new_substatus: null,
      detector_id: 77,
    };
    await stack.producer.publishStatusChange(change);
    await waitFor('the change held', async () => (await heldFor('detector', '77')) === 1);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect(await groupStatus()).toBe('unresolved');

    // status shows the held reference by kind, and grouping's groups by status (the consumer runs
    // in this process, without a heartbeat: the service is not ready)
    const status = shoal(['status', '--json'], { DATABASE_URL: stack.db.url });
    expect(status.status).toBe(4);
    expect(JSON.parse(status.stdout).services).toMatchObject([
      {
        service: 'grouping',
        ready: false,
        groups: [
          {
            held: [
              {
                entity: 'detector',
                messages: 1,
                oldest: expect.any(String),
                nextDeadline: expect.any(String),
              },
            ],
          },
        ],
        issueGroups: { unresolved: 1 },
      },
    ]);

    const dry = shoal([
      'entities',
      'announce',
      'detector',
      '77',
      '--project',
      String(PROJECT),
      '--dry-run',
    ]);
    expect(dry.status).toBe(0);
    expect(dry.stdout).toMatch(
      /^detector 77: would publish created \(event [0-9a-f-]{36}, actor .+@.+\)\n$/,
    );
    expect(await entityChanges()).toEqual([]);

    const announced = shoal([
      'entities',
      'announce',
      'detector',
      '77',
      '--project',
      String(PROJECT),
      '--actor',
      'ops@example',
      '--json',
    ]);
    expect(announced.stderr).toContain('published 1 created change(s)');
    expect(announced.status).toBe(0);
    await waitFor(
      'the held change applied',
      async () => (await groupStatus()) === 'resolved',
      60_000,
    );
    expect(await heldFor('detector', '77')).toBe(0);
    expect(await rows('SELECT id::int, project_id, deleted_at FROM detectors')).toEqual([
      { id: 77, project_id: PROJECT, deleted_at: null },
    ]);
    const [published] = await entityChanges();
    expect(published).toEqual({
      key: 'detector:77',
      value: {
        event_id: expect.any(String),
        entity_kind: 'detector',
        entity_id: '77',
        change: 'created',
        occurred_at: expect.any(String),
        actor: 'ops@example',
        project_id: PROJECT,
      },
    });
    expect(JSON.parse(announced.stdout)).toMatchObject({
      action: 'publish',
      value: published!.value,
    });
  }, 120_000);

  it('--file publishes each good line and reports each bad one by line and field (exit 3)', async () => {
    const file = path.join(os.tmpdir(), `${uniqueName('entities-')}.jsonl`);
    writeFileSync(
      file,
      [
        '{"kind": "environment", "id": "staging", "project_id": 31}',
        'not json',
        '{"kind": "detector", "id": "seventy"}',
        '{"kind": "release", "id": "2.0.0"}',
        '',
        '{"kind": "project", "id": 32, "project_id": "thirty"}',
        '{"kind": "detector", "id": 78, "project_id": 31, "name": "uptime"}',
      ].join('\n'),
    );
    const run = shoal(['entities', 'delete', '--file', file, '--yes', '--actor', 'ops@example']);
    expect(run.status).toBe(3);
    expect(run.stdout.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(
        /^line 1: environment staging: published deleted \(event .*, actor ops@example\)$/,
      ),
      'line 2: refused: not JSON',
      'line 3: refused: id: a detector id is a whole number from 1, got "seventy"',
      'line 4: refused: project_id: a release belongs to a project: give its id',
      'line 6: refused: /project_id must be integer',
      expect.stringMatching(/^line 7: detector 78: published deleted/),
    ]);
    // keyed per entity, on partitions of their own: in no order across them
    const published = (await entityChanges()).filter((p) => p.value.change === 'deleted');
    expect(published.map((p) => [p.key, p.value.change, p.value.actor]).sort()).toEqual([
      ['detector:78', 'deleted', 'ops@example'],
      ['environment:staging', 'deleted', 'ops@example'],
    ]);
    await waitFor(
      'the detector deleted',
      async () =>
        (await rows('SELECT 1 FROM detectors WHERE id = 78 AND deleted_at IS NOT NULL')).length ===
        1,
      60_000,
    );
  }, 120_000);

  it('bad usage exits 2 naming the argument, publishing nothing', async () => {
    const before = (await entityChanges()).length;
    const cases: [string[], string][] = [
      [['entities', 'announce', 'planet', '1'], 'kind: expected one of detector, group, project'],
      [['entities', 'announce', 'detector', '0'], 'id: a detector id is a whole number from 1'],
      [['entities', 'announce', 'detector'], 'give <kind> <id>, or --file'],
      [
        ['entities', 'announce', 'environment', 'prod'],
        'project_id: a environment belongs to a project',
      ],
      [['entities', 'discard', 'project', '3', '--yes'], 'kind: only a group is discarded'],
      [['entities', 'delete', 'project', '3'], '--yes is required to delete'],
      [
        ['entities', 'announce', 'detector', '9', '--project', 'x'],
        "option '--project <id>' argument 'x' is invalid",
      ],
    ];
    for (const [args, named] of cases) {
      const result = shoal(args);
      expect({ args, status: result.status }).toEqual({ args, status: 2 });
      expect(result.stderr).toContain(named);
    }
    expect((await entityChanges()).length).toBe(before);
    const help = shoal(['entities', 'discard', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('npx shoal entities discard group 1234 --yes');
    expect(help.stdout).toContain('3    done, but some records were refused');
  }, 120_000);

  it('the registry down: exit 4, nothing published', async () => {
    const before = (await entityChanges()).length;
    const result = shoal(['entities', 'announce', 'project', '40'], {
      SCHEMA_REGISTRY_URL: `http://127.0.0.1:${await closedPort()}/apis/ccompat/v7`,
    });
    expect(result.status).toBe(4);
    expect((await entityChanges()).length).toBe(before);
  }, 60_000);
});
