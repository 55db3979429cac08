import { randomUUID } from 'node:crypto';
import type { EntityChange, GroupEvent, IncidentEvent, LifecycleCommand } from '@shoal/contracts';
import { withTransaction } from '@shoal/db';
import { HEADER } from '@shoal/kafka-runtime';
import {
  freePort,
  isolatedDatabase,
  isolatedTopics,
  readAll,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, expect, it } from 'vitest';
import { publishJson } from '../../../services/dedup/test/support.js';
import { recordsOn } from '../../../services/lifecycle/test/api-support.js';
import { agent, publish, sha256 } from '../../../services/lifecycle/test/decide-support.js';
import { parseDeclaration, loadServicePackage } from '../src/rebuild/declaration.js';
import { swapSchemas } from '../src/rebuild/swap.js';
import { shoalRunners } from './support.js';

// `shoal rebuild lifecycle` (issue 16's "rebuild from the commands, relay off: tables equal live,
// outbox equals the topic event for event"): lifecycle's own main, its two consumer groups, run for
// real and SIGKILLed while agents' commands flow (claims, transitions, notes, resolutions) beside
// group events, an incident and entity changes. The CLI as a process: an empty diff and a swap the
// live service goes on from; then a corrupted live issue shows in the diff and blocks --swap. The
// rebuilt outbox is compared here with the topics: decide's events with shoal.lifecycle.v1 and
// shoal.status-changes.v1, intake's system commands with shoal.lifecycle-commands.v1.

const main = `${repoRoot}services/lifecycle/src/main.ts`;
const ISSUES = Array.from({ length: 8 }, (_, i) => 7101 + i);
/** In project 2, deleted later: hidden. */
const OTHER_PROJECT = 7108;
/** Its group deleted: a tombstone. */
const DELETED = 7107;

let ns: IsolatedTopics;
let db: IsolatedDatabase;
let running: RunningEntryPoint | undefined;
afterAll(async () => {
  if (running && running.child.exitCode === null) running.child.kill('SIGKILL');
  await running?.exited;
  await Promise.all([ns?.drop(), db?.drop()]);
});

const now = () => new Date().toISOString();
const summaryOf = (stdout: string) =>
  JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;

/** Input events as their producers send them: keyed by `key`, the event id as message id. */
const send = <V extends { event_id: string }>(topic: string, key: (v: V) => string, values: V[]) =>
  publishJson(
    topic,
    values.map((v) => ({ key: key(v), value: v, id: v.event_id })),
  );

const groupEvent = (
  id: number,
  type: GroupEvent['event_type'],
  fields: Partial<GroupEvent> = {},
): GroupEvent => ({
  event_id: randomUUID(),
  event_type: type,
  occurred_at: now(),
  group_id: id,
  project_id: id === OTHER_PROJECT ? 2 : 1,
  level: 'error',
  title: `issue ${id}`,
  status: 'unresolved',
  ...fields,
});

const count = async (sql: string) => (await db.pool.query<{ n: number }>(sql)).rows[0]!.n;

/** Every offset the group stored, summed over `topics`. */
const applied = (group: string, topics: string[]) =>
  db.pool
    .query<{ n: number }>(
      `SELECT coalesce(sum(next_offset), 0)::int AS n FROM lifecycle.consumer_offsets
       WHERE consumer_group = $1 AND topic = ANY($2)`,
      [group, topics],
    )
    .then((r) => r.rows[0]!.n);

it('after a run with agent traffic and a SIGKILL: an empty diff, the outbox equals the topics, --swap; a corrupted issue blocks --swap', async () => {
  /** Each step's wall time, printed at the end. */
  const steps: string[] = [];
  let since = Date.now();
  const step = (name: string) => {
    steps.push(`${name} ${Date.now() - since} ms`);
    since = Date.now();
  };
  ns = await isolatedTopics({
    partitions: { lifecycleCommands: 2, groupEvents: 2, incidents: 1, entityChanges: 1 },
  });
  db = await isolatedDatabase({ migrate: false });
  const group = uniqueName('shoal.lifecycle.test-');
  const env = {
    DATABASE_URL: db.url,
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    SHOAL_CONSUMER_GROUP: group,
    SHOAL_API_PORT: String(await freePort()),
    SHOAL_API_TOKENS: 'agent-1:tok-rebuild:read+claim+write',
    SHOAL_SESSION_TIMEOUT_MS: '6000',
  };
  const start = async () => {
    running = spawnEntryPoint(main, env, '"agent API listening"');
    await running.ready;
  };
  const { shoal } = shoalRunners(() => env);
  const intakeTopics = [ns.topics.groupEvents, ns.topics.incidents, ns.topics.entityChanges];
  /** Until lifecycle is idle: every input applied by both groups, every event published (twice in a row). */
  const settled = async () => {
    let quiet = 0;
    await waitFor(
      'lifecycle idle',
      async () => {
        const [commands, inputs] = [
          await recordsOn(ns.topics.lifecycleCommands),
          (await Promise.all(intakeTopics.map(recordsOn))).reduce((a, b) => a + b, 0),
        ];
        const idle =
          (await applied(`${group}.decide`, [ns.topics.lifecycleCommands])) === commands &&
          (await applied(`${group}.intake`, intakeTopics)) === inputs &&
          (await count(
            'SELECT count(*)::int AS n FROM lifecycle.outbox WHERE published_at IS NULL',
          )) === 0;
        quiet = idle ? quiet + 1 : 0;
        return quiet === 2;
      },
      60_000,
    );
  };
  await start();
  step('start');

  await send(ns.topics.groupEvents, (e) => String(e.group_id), [
    ...ISSUES.map((id) => groupEvent(id, 'group_created')),
    ...ISSUES.slice(0, 3).map((id) =>
      groupEvent(id, 'group_activity', { times_seen: 5, last_seen: now() }),
    ),
  ]);
  await waitFor(
    'every issue opened',
    async () => (await count('SELECT count(*)::int AS n FROM lifecycle.issues')) === ISSUES.length,
    30_000,
  );

  // agents claim and work every issue; lifecycle is SIGKILLed while they are decided
  const tokens = new Map(ISSUES.map((id) => [id, sha256(`token-${id}`)]));
  const work = (
    id: number,
    fields: Partial<LifecycleCommand> & Pick<LifecycleCommand, 'command'>,
  ) => agent({ issue_id: id, issued_at: now(), ...fields });
  await publish(
    ns,
    ISSUES.flatMap((id) => [
      work(id, { command: 'claim', claim_token: tokens.get(id)!, lease_seconds: 3600 }),
      work(id, { command: 'transition', to_status: 'in_progress', claim_token: tokens.get(id)! }),
      work(id, { command: 'add_note', note: `looking at ${id}` }),
    ]),
  );
  await waitFor(
    'an agent command decided',
    async () =>
      (await count(
        `SELECT count(*)::int AS n FROM lifecycle.lifecycle_commands WHERE command IN ('claim', 'transition', 'add_note')`,
      )) > 0,
    30_000,
  );
  running!.child.kill('SIGKILL');
  await running!.exited;
  await start();
  step('traffic, SIGKILL, restart');
  const even = ISSUES.filter((id) => id % 2 === 0);
  await publish(ns, [
    ...even.flatMap((id) => [
      work(id, {
        command: 'transition',
        to_status: 'awaiting_verification',
        claim_token: tokens.get(id)!,
      }),
      work(id, {
        command: 'resolve',
        resolution: {
          type: 'in_commit',
          commit_shas: ['9fceb02d0ae598e95dc970b74767f19372d61af8'],
        },
      }),
    ]),
    ...ISSUES.filter((id) => id % 2 === 1).map((id) =>
      work(id, { command: 'release', claim_token: tokens.get(id)! }),
    ),
    // refused: no issue moves back to new (a rejection is an outcome too)
    work(7103, { command: 'transition', to_status: 'new' }),
  ]);
  const incident: IncidentEvent = {
    event_id: randomUUID(),
    event_type: 'incident_linked',
    occurred_at: now(),
    incident_id: 1,
    project_id: 1,
    canonical_group_id: 7103,
    group_id: 7104,
    reason: 'dedup_key',
  };
  await send(ns.topics.incidents, (e) => String(e.incident_id), [incident]);
  const entities: EntityChange[] = [
    { kind: 'group', id: String(DELETED) },
    { kind: 'project', id: '2' },
  ].map(({ kind, id }) => ({
    event_id: randomUUID(),
    entity_kind: kind as EntityChange['entity_kind'],
    entity_id: id,
    change: 'deleted',
    occurred_at: now(),
  }));
  await send(ns.topics.entityChanges, (e) => `${e.entity_kind}:${e.entity_id}`, entities);
  await settled();
  const { rows: shape } = await db.pool.query(
    `SELECT array_agg(id::int ORDER BY id) FILTER (WHERE status = 'resolved') AS resolved,
            array_agg(id::int) FILTER (WHERE duplicate_of IS NOT NULL) AS duplicates,
            array_agg(id::int) FILTER (WHERE deleted_at IS NOT NULL) AS deleted,
            array_agg(id::int) FILTER (WHERE hidden) AS hidden
     FROM lifecycle.issues`,
  );
  expect(shape[0], 'the traffic did what it says').toEqual({
    resolved: even,
    duplicates: [7104],
    deleted: [DELETED],
    hidden: [OTHER_PROJECT],
  });
  step('more traffic, settled');

  const swapped = shoal(['rebuild', 'lifecycle', '--swap', '--yes', '--json']);
  expect(swapped.stderr, swapped.stdout.slice(0, 3000)).toContain('no differences');
  expect(swapped.stderr).toContain('swapped');
  expect(swapped.status).toBe(0);
  const summary = summaryOf(swapped.stdout);
  expect(summary).toMatchObject({ differences: 0, swapped: true, replaced: 'lifecycle_replaced' });
  expect(Object.keys(summary.stopAt as object).sort()).toEqual([
    `${group}.decide`,
    `${group}.intake`,
  ]);
  step('rebuild and swap');

  // the live service goes on in the rebuilt schema
  await publish(ns, [work(7101, { command: 'add_note', note: 'after the swap' })]);
  await waitFor(
    'the note applied in the swapped-in schema',
    async () =>
      (await count(
        `SELECT count(*)::int AS n FROM lifecycle.issue_history WHERE details->>'note' = 'after the swap'`,
      )) === 1,
    30_000,
  );
  await settled();
  step('a command after the swap');

  await db.pool.query(`UPDATE lifecycle.issues SET severity = 'low' WHERE id = 7102`);
  const refused = shoal(['rebuild', 'lifecycle', '--swap', '--yes', '--json']);
  expect(refused.stderr).toContain('swap refused: the diff is not empty');
  expect(refused.status).toBe(3);
  const differences = refused.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.type === 'difference');
  expect(differences).toEqual([
    {
      type: 'difference',
      table: 'issues',
      difference: 'different',
      key: { id: '7102' },
      live: { severity: 'low' },
      rebuilt: { severity: 'high' },
    },
  ]);
  expect(
    await count(`SELECT count(*)::int AS n FROM lifecycle.issues WHERE severity = 'low'`),
  ).toBe(1);

  step('rebuild refused');

  // the rebuilt outbox (kept in lifecycle_rebuild) against the topics, event for event
  const { rows: outbox } = await db.pool.query<{
    event_id: string;
    topic: string;
    message_key: string;
    payload: Record<string, unknown>;
  }>('SELECT event_id, topic, message_key, payload FROM lifecycle_rebuild.outbox_events');
  expect(
    await count(
      'SELECT count(*)::int AS n FROM lifecycle_rebuild.outbox WHERE published_at IS NOT NULL',
    ),
  ).toBe(0);
  const without = (payload: Record<string, unknown>, omit: string[]) =>
    Object.fromEntries(Object.entries(payload).filter(([field]) => !omit.includes(field)));
  const topics = [ns.topics.lifecycle, ns.topics.statusChanges, ns.topics.lifecycleCommands];
  const records = new Map(
    await Promise.all(topics.map(async (topic) => [topic, await readAll(topic)] as const)),
  );
  /** Per id, what a topic holds (a re-publish after a kill repeats an id: it must repeat the event). */
  const onTopic = (
    topic: string,
    idOf: (value: Record<string, unknown>, messageId: string) => string | undefined,
    omit: string[] = [],
  ) => {
    const byId = new Map<string, { key: string | null; payload: Record<string, unknown> }>();
    for (const record of records.get(topic)!) {
      // the relay's records are framed (a magic byte and the schema id), the test's own plain JSON
      const bytes = record.value![0] === 0 ? record.value!.subarray(5) : record.value!;
      const value = JSON.parse(bytes.toString()) as Record<string, unknown>;
      const id = idOf(value, record.headers[HEADER.messageId]!);
      if (id === undefined) continue;
      const event = { key: record.key, payload: without(value, omit) };
      if (byId.has(id)) expect(byId.get(id), `${topic}: ${id} again`).toEqual(event);
      byId.set(id, event);
    }
    return byId;
  };
  const rebuilt = (
    topic: string,
    idOf: (e: (typeof outbox)[number]) => string,
    omit: string[] = [],
  ) =>
    new Map(
      outbox
        .filter((e) => e.topic === topic)
        .map((e) => [idOf(e), { key: e.message_key, payload: without(e.payload, omit) }]),
    );
  // decide's events: ids derived from the command ids, so the same ids as the live ones
  for (const topic of topics.slice(0, 2)) {
    const published = onTopic(topic, (_value, messageId) => messageId);
    expect(published.size).toBeGreaterThan(0);
    expect(
      rebuilt(topic, (e) => e.event_id),
      topic,
    ).toEqual(published);
  }
  // intake's system commands (command id = UUIDv5 of the source event), issued at intake's clock
  const commands = onTopic(
    ns.topics.lifecycleCommands,
    (value) => (value.origin === 'system' ? (value.command_id as string) : undefined),
    ['issued_at'],
  );
  expect(commands.size).toBeGreaterThanOrEqual(ISSUES.length + 3);
  expect(
    rebuilt(ns.topics.lifecycleCommands, (e) => e.payload.command_id as string, ['issued_at']),
  ).toEqual(commands);
  step('outbox against the topics');

  // a swap checks each group's offsets: one that moved past its stop refuses it, naming the group
  const { declaration } = await loadServicePackage('lifecycle');
  const stopAt = summaryOf(refused.stdout).stopAt as Record<
    string,
    Record<string, Record<string, number>>
  >;
  const decide = stopAt[`${group}.decide`]![ns.topics.lifecycleCommands]!;
  const moved = Object.keys(decide)[0]!;
  await expect(
    withTransaction(db.pool, (tx) =>
      swapSchemas(tx, {
        declaration,
        live: 'lifecycle',
        rebuilt: 'lifecycle_rebuild',
        group,
        stopAt: {
          ...stopAt,
          [`${group}.decide`]: {
            [ns.topics.lifecycleCommands]: { ...decide, [moved]: decide[moved]! - 1 },
          },
        },
      }),
    ),
  ).rejects.toThrow(`${group}.decide ${ns.topics.lifecycleCommands}:${moved} now ${decide[moved]}`);
  expect(
    await count(`SELECT count(*)::int AS n FROM lifecycle.issues WHERE severity = 'low'`),
  ).toBe(1);
  // a live group none of whose groups has offsets
  const nobody = shoal(['rebuild', 'lifecycle', '--group', 'shoal.nobody']);
  expect(nobody.stderr).toContain(
    'groups shoal.nobody.decide, shoal.nobody.intake have no offsets in schema "lifecycle"',
  );
  expect(nobody.status).toBe(4);
  const plan = shoal(['rebuild', 'lifecycle', '--dry-run']);
  expect(plan.status).toBe(0);
  expect(plan.stdout).toMatch(
    new RegExp(
      `^would rebuild lifecycle \\(schema lifecycle\\) into lifecycle_rebuild: \\d+ records up to ${group}\\.decide's offsets .+; ${group}\\.intake's offsets .+; would compare issues, issue_history`,
    ),
  );
  console.log(`rebuild-lifecycle: ${steps.join(', ')}`);
}, 180_000);

it('a declaration of several groups names two or more, each a group name, none twice', () => {
  const declare = (groups: unknown) =>
    parseDeclaration('rebuild.json', {
      service: 'svc',
      groups,
      tables: [{ name: 'things', key: ['id'] }],
    });
  expect(declare(['decide', 'intake']).groups).toEqual(['decide', 'intake']);
  expect(() => declare(['decide'])).toThrow('rebuild.json: groups:');
  expect(() => declare(['decide', 'Intake Group'])).toThrow(
    'groups.1: expected a group name: lower case, digits and -',
  );
  expect(() => declare(['decide', 'decide'])).toThrow('groups: a group is named twice');
});
