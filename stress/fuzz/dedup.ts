/**
 * Dedup as a fuzz target: its valid payloads on its three input topics, the group it deletes
 * before the run (messages naming it are stale references), and its read model and incident
 * events checked against what was applied. Dedup knows no entity that must be announced (a group it
 * has not heard of is made on first sight), so nothing is held or sent late.
 */
import { createHash } from 'node:crypto';
import type { IncidentEvent, TopicKey } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import type { IsolatedDatabase } from '@shoal/testing';
import { readAll, waitFor } from '../../packages/kafka-runtime/test/support.js';
import { dedupMessageId } from '../../services/dedup/src/service.js';
import { dedupDatabase } from '../../services/dedup/test/support.js';
import {
  APPLIED,
  deadLettered,
  extremeKind,
  setField,
  type FuzzCase,
  type Outcome,
  type Payload,
  type Sample,
} from './cases.js';
import type { Check, FuzzTarget } from './engine.js';

const SAFE_MAX = Number.MAX_SAFE_INTEGER;
/** Deleted in the setup, before dedup heard of it: every later message naming it is stale. */
const DELETED_GROUP = 7;
/** Deleted in the setup: every later group event of it is a stale reference to the project. */
const DELETED_PROJECT = 9;
/** No incident has these ids: commands naming them are refused (a rejection counts as applied). */
const NO_INCIDENT = 1_000_000;

const uuid = (seed: string) => {
  const h = createHash('sha1').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** Dedup stores every string (NUL spelled out); a group's id in an entity change must be a number. */
function stringOutcome(topic: TopicKey, path: string): Outcome {
  if (topic === 'entityChanges' && path === '/entity_id') return deadLettered('schema_invalid');
  return APPLIED;
}

export const dedupFuzzTarget: FuzzTarget = {
  name: 'dedup',
  main: new URL('../../services/dedup/src/main.ts', import.meta.url).pathname,
  readyWhen: '"consumer running"',
  database: dedupDatabase,
  inputs: ['groupEvents', 'entityChanges', 'dedupCommands'],
  partitions: { groupEvents: 4, entityChanges: 2, dedupCommands: 2 },
  table: (name) => name,
  payloadMessageId: (topic, payload) => dedupMessageId(payload as never, topic),
  prepare() {
    let serial = 0;
    const fresh = () => ++serial;
    // each sample on a key of its own: a dead-lettered one parks nothing good behind it
    const groupCreated = (): Sample => {
      const n = fresh();
      const groupId = 10_000 + n;
      const payload: Payload = {
        event_id: uuid(`group-created:${process.pid}:${n}`),
        event_type: 'group_created',
        occurred_at: '2026-11-30T00:00:00.000Z',
        group_id: groupId,
        project_id: 1 + (n % 3),
        short_id: `FUZZ-${n}`,
        primary_hash: `hash-${n}`,
        group_type: 1,
        level: 'error',
        title: `Fuzz error ${n}`,
        culprit: 'fuzz.py in run',
        status: 'unresolved',
        dedup_hints: {
          message: `Order ${n} not found in shard ${['red', 'green', 'blue'][n % 3]}`,
          component: 'orders',
          route: `/api/orders/${n}`,
          stack_frames: [`find orders.py:${n}`],
        },
      };
      return {
        topic: 'groupEvents',
        key: String(groupId),
        headers: { [HEADER.messageId]: payload.event_id as string },
        payload,
      };
    };
    const deleted = (kind: 'group' | 'project', id: number): Sample => {
      const n = fresh();
      const payload: Payload = {
        event_id: uuid(`entity:${process.pid}:${n}`),
        entity_kind: kind,
        entity_id: String(id),
        change: 'deleted',
        occurred_at: '2026-11-30T00:00:00.000Z',
        ...(kind === 'group' ? { project_id: 1 } : {}),
        name: 'fuzz',
        actor: 'user:1',
      };
      return {
        topic: 'entityChanges',
        key: `${kind}:${id}:${n}`,
        headers: { [HEADER.messageId]: payload.event_id as string },
        payload,
      };
    };
    const command = (): Sample => {
      const n = fresh();
      const payload: Payload = {
        command_id: uuid(`command:${process.pid}:${n}`),
        command: 'split',
        incident_id: NO_INCIDENT + n,
        group_id: 20_000 + n,
        actor: 'ops@fuzz',
        reason: 'fuzz',
        issued_at: '2026-11-30T00:00:00.000Z',
      };
      return {
        topic: 'dedupCommands',
        key: String(NO_INCIDENT + n),
        headers: { [HEADER.messageId]: payload.command_id as string },
        payload,
      };
    };
    const valid = (topic: TopicKey): Sample =>
      topic === 'groupEvents'
        ? groupCreated()
        : topic === 'entityChanges'
          ? deleted('group', 30_000 + fresh())
          : command();

    const extreme = extremeKind(valid);
    const activityOf = (groupId: number) => (p: Payload) => ({
      event_id: p.event_id,
      event_type: 'group_activity',
      occurred_at: p.occurred_at,
      group_id: groupId,
      project_id: p.project_id,
      times_seen: 3,
      times_seen_delta: 1,
      first_seen: '2026-11-30T00:00:00.000Z',
      last_seen: '2026-11-30T00:01:00.000Z',
    });

    return {
      valid,
      stringOutcome,
      setup: [deleted('group', DELETED_GROUP), deleted('project', DELETED_PROJECT)],
      good: (i) =>
        i % 10 < 7 ? groupCreated() : i % 10 < 9 ? deleted('group', 40_000 + i) : command(),
      kinds: [
        extreme('groupEvents', 'group id 2^53-1', setField('/group_id', SAFE_MAX), APPLIED),
        extreme('groupEvents', 'project id 2^53-1', setField('/project_id', SAFE_MAX), APPLIED),
        extreme(
          'groupEvents',
          'no dedup hints',
          (p) => ({ ...p, dedup_hints: undefined }),
          APPLIED,
        ),
        extreme(
          'groupEvents',
          '1,000 stack frames',
          setField(
            '/dedup_hints/stack_frames',
            Array.from({ length: 1000 }, (_, k) => `f${k} x.py:${k}`),
          ),
          APPLIED,
        ),
        extreme(
          'groupEvents',
          'activity with times seen 2^53-1',
          (p) => ({ ...activityOf(Number(p.group_id))(p), times_seen: SAFE_MAX }),
          APPLIED,
        ),
        extreme(
          'groupEvents',
          'group_created of a deleted group',
          setField('/group_id', DELETED_GROUP),
          deadLettered('stale_reference', 'group'),
        ),
        extreme(
          'groupEvents',
          'group_created of a deleted project',
          setField('/project_id', DELETED_PROJECT),
          deadLettered('stale_reference', 'project'),
        ),
        extreme(
          'groupEvents',
          'group_activity of a deleted group',
          activityOf(DELETED_GROUP),
          deadLettered('stale_reference', 'group'),
        ),
        extreme(
          'entityChanges',
          'group id as a word',
          setField('/entity_id', 'group-seven'),
          deadLettered('schema_invalid'),
        ),
        extreme(
          'entityChanges',
          'group id 2^64',
          setField('/entity_id', '18446744073709551616'),
          deadLettered('schema_invalid'),
        ),
        // not the id created above: the two topics' order is not fixed, so deleting it could come first
        extreme(
          'entityChanges',
          'group id 2^53-2',
          setField('/entity_id', String(SAFE_MAX - 1)),
          APPLIED,
        ),
        extreme(
          'dedupCommands',
          'split naming a deleted group',
          setField('/group_id', DELETED_GROUP),
          deadLettered('stale_reference', 'group'),
        ),
        extreme('dedupCommands', 'incident 2^53-1', setField('/incident_id', SAFE_MAX), APPLIED),
      ],
      late: () => ({ held: [], announce: [] }),
      verify: (applied, db, ns) => verifyDedup(applied, db, ns.topics.incidents),
    };
  },
};

/**
 * Every applied group_created made one incident_linked event (by id), and its group is a member
 * linked to an incident unless it was deleted since; every applied deletion (group, project) left
 * a tombstone; every applied command was refused (no incident has its id) and recorded.
 */
async function verifyDedup(
  applied: FuzzCase[],
  db: IsolatedDatabase,
  topic: string,
): Promise<Check[]> {
  const payloads = (t: TopicKey) => applied.filter((c) => c.topic === t).map((c) => c.payload!);
  const deletedOf = (kind: string) =>
    new Set(
      payloads('entityChanges')
        .filter((p) => p.entity_kind === kind)
        .map((p) => Number(p.entity_id)),
    );
  const deleted = deletedOf('group');
  const deletedProjects = deletedOf('project');
  // every applied creation linked its group and said so; a group deleted since has left
  // a kind with a fixed group id (2^53-1) repeats in a long run: its second group_created is a
  // re-delivery of a known group and links nothing again
  const everCreated = new Set(
    payloads('groupEvents')
      .filter((p) => p.event_type === 'group_created' && p.dedup_hints !== undefined)
      .map((p) => Number(p.group_id)),
  );
  const created = new Set([...everCreated].filter((g) => !deleted.has(g)));
  await waitFor(
    'the outbox published',
    async () =>
      (await db.pool.query('SELECT 1 FROM outbox WHERE published_at IS NULL')).rowCount === 0,
    60_000,
  );
  const { rows } = await db.pool.query<{ group_id: string; linked: boolean; deleted: boolean }>(
    `SELECT group_id::text, incident_id IS NOT NULL AS linked, deleted_at IS NOT NULL AS deleted FROM members`,
  );
  const linked = new Set(rows.filter((r) => r.linked).map((r) => Number(r.group_id)));
  const projectTombstones = new Set(
    (
      await db.pool.query<{ id: string }>(
        'SELECT id::text FROM projects WHERE deleted_at IS NOT NULL',
      )
    ).rows.map((r) => Number(r.id)),
  );
  const tombstones = new Set(rows.filter((r) => r.deleted).map((r) => Number(r.group_id)));
  const events = (await readAll(topic)).map(
    (r) => JSON.parse(r.value!.subarray(5).toString()) as IncidentEvent,
  );
  const distinct = new Map(events.map((e) => [e.event_id, e]));
  const linkedEvents = [...distinct.values()].filter((e) => e.event_type === 'incident_linked');
  const rejections = (
    await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM message_rejections')
  ).rows[0]!.n;
  const commands = payloads('dedupCommands').length;
  const same = (a: Set<number>, b: Set<number>) =>
    a.size === b.size && [...a].every((x) => b.has(x));
  return [
    {
      name: 'each applied group_created linked its group once',
      ok: same(linked, created) && linkedEvents.length === everCreated.size,
      detail: `${linked.size} linked, ${created.size} expected; ${linkedEvents.length} incident_linked events, ${everCreated.size} expected`,
    },
    {
      name: 'each applied group deletion left a tombstone',
      ok: [...deleted].every((g) => tombstones.has(g)),
      detail: `${tombstones.size} tombstones, ${deleted.size} deletions`,
    },
    {
      name: 'each applied project deletion left a tombstone',
      ok: same(projectTombstones, deletedProjects),
      detail: `${projectTombstones.size} project tombstones, ${deletedProjects.size} deletions`,
    },
    {
      name: 'each applied command was refused and recorded',
      ok: rejections === commands,
      detail: `${rejections} rejections, ${commands} commands`,
    },
  ];
}
