/**
 * Grouping as a fuzz target: its valid payloads, what it can and cannot store, the entities it
 * refers to (some deleted before the run, some never announced, some announced late), and its read
 * model and group events checked against what was applied.
 */
import { createHash } from 'node:crypto';
import { payloadMessageId, type GroupEvent, type TopicKey } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import type { IsolatedDatabase } from '@shoal/testing';
import { readAll, waitFor } from '../../packages/kafka-runtime/test/support.js';
import { hashOf } from '../../services/grouping/src/fingerprints.js';
import { groupingDatabase, groupingMain } from '../../services/grouping/test/support.js';
import {
  APPLIED,
  deadLettered,
  extremeKind,
  setField,
  withField,
  type FuzzCase,
  type Outcome,
  type Payload,
  type Sample,
} from './cases.js';
import type { Check, FuzzTarget, Late } from './engine.js';

/** Grouping's database as its main makes it, and where its tables and its runtime tables are. */
export { groupingDatabase };
export const groupingTable = (name: string) => name;

const INT4_MAX_PLUS_1 = 2 ** 31;
const SAFE_MAX = Number.MAX_SAFE_INTEGER;
const STATUS = ['unresolved', 'resolved', 'ignored'];

// entities of the setup: live ones, and ones deleted before the run
const LIVE_DETECTOR = 4;
const DELETED_DETECTOR = 3;
/** Never announced: references to it are held, then dead-lettered `unknown_reference` past the deadline. */
const UNKNOWN_DETECTOR = INT4_MAX_PLUS_1 + 1;
/** Announced only after every case was sent: messages naming it are held, then applied. */
const LATE_DETECTOR = 777;
/**
 * How long the child holds a message for an entity not yet announced: the late ones are announced
 * within a few seconds of being held; the never announced ones are dead-lettered soon after.
 */
const HOLD_DEADLINE_SECONDS = '15';
const DELETED_PROJECT = 66;
/** Deleted in project 1 (an environment belongs to its project). */
const DELETED_ENVIRONMENT = 'gone';
/** Groups made in the setup (project 1), which status changes refer to. */
const TARGET_GROUPS = 8;

const withDetector = (s: Sample, detector: number): Sample => ({
  ...s,
  payload: withField(s.payload, '/shoal/detector_id', detector),
});

const uuid = (seed: string) => {
  const h = createHash('sha1').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/**
 * Grouping stores every string the schemas accept (NUL as `\u0000`, long environment names unique by
 * md5); a status change naming a fingerprint no group has waits for a group never made; an entity
 * id of a detector must be a whole number.
 */
function stringOutcome(topic: TopicKey, path: string): Outcome {
  if (topic === 'statusChanges' && path === '/fingerprint/0')
    return deadLettered('unknown_reference', 'group');
  if (topic === 'entityChanges' && path === '/entity_id') return deadLettered('schema_invalid');
  return APPLIED;
}

export const groupingFuzzTarget: FuzzTarget = {
  name: 'grouping',
  main: groupingMain,
  readyWhen: '"consumer running"',
  database: groupingDatabase,
  inputs: ['occurrences', 'statusChanges', 'entityChanges'],
  partitions: { occurrences: 4, statusChanges: 4, entityChanges: 2 },
  env: { SHOAL_HOLD_DEADLINE_SECONDS: HOLD_DEADLINE_SECONDS, SHOAL_GROUP_ACTIVITY_SECONDS: '0.5' },
  table: groupingTable,
  payloadMessageId: (topic, payload) => payloadMessageId(payload, topic),
  prepare() {
    let serial = 0;
    const fresh = () => `${process.pid}:${++serial}`;
    const occurrence = (project: number, fingerprint: string): Sample => {
      const n = fresh();
      const payload: Payload = {
        id: uuid(`occurrence:${n}`),
        project_id: project,
        fingerprint: [fingerprint],
        issue_title: `Fuzz error ${n}`,
        subtitle: 'a subtitle',
        culprit: 'fuzz.py in run',
        resource_id: null,
        assignee: null,
        type: 1,
        level: 'error',
        detection_time: 1764000000 + serial,
        initial_issue_priority: 50,
        event_id: uuid(`event:${n}`).replace(/-/g, ''),
        event: {
          event_id: uuid(`embedded:${n}`),
          project_id: project,
          platform: 'python',
          timestamp: '2026-11-30T00:00:00Z',
          received: 1764460800,
          release: 'fuzz@1.0',
          environment: 'production',
        },
        shoal: {
          trace_id: `trace-${n}`,
          request_id: `request-${n}`,
          detector_id: LIVE_DETECTOR,
          dedup_hints: { component: 'c', route: '/r', message: 'm', stack_frames: ['f'] },
        },
      };
      return { topic: 'occurrences', key: `${project}:${fingerprint}`, payload };
    };
    const statusChange = (
      project: number,
      fingerprint: string,
      status: number,
      detector = LIVE_DETECTOR,
    ): Sample => ({
      topic: 'statusChanges',
      key: `${project}:${fingerprint}`,
      headers: { [HEADER.messageId]: `fuzz-status:${fresh()}` },
      payload: {
        project_id: project,
        fingerprint: [fingerprint],
        new_status: status,
        new_substatus: null,
        detector_id: detector,
        activity_data: {},
        update_date: '2026-11-30T00:00:00Z',
        payload_type: 'status_change',
        shoal: { trace_id: 't', request_id: 'r', resolved_in_release: 'fuzz@1.0' },
      },
    });
    const entityChange = (
      kind: string,
      id: string,
      change: string,
      project: number | null = 1,
    ): Sample => {
      const n = fresh();
      return {
        topic: 'entityChanges',
        key: id,
        headers: { [HEADER.messageId]: `fuzz-entity:${n}` },
        payload: {
          event_id: uuid(`entity:${n}`),
          entity_kind: kind,
          entity_id: id,
          change,
          occurred_at: '2026-11-30T00:00:00Z',
          ...(project === null ? {} : { project_id: project }),
          name: 'fuzz',
          actor: 'user:1',
        },
      };
    };
    const valid = (topic: TopicKey, i: number): Sample =>
      topic === 'occurrences'
        ? occurrence(1 + (i % 5), `fuzz-${fresh()}`)
        : topic === 'statusChanges'
          ? statusChange(1, `target-${i % TARGET_GROUPS}`, i % 3)
          : entityChange('detector', String(1000 + (i % 100)), 'created');

    const extreme = extremeKind(valid);

    return {
      valid,
      stringOutcome,
      setup: [
        entityChange('project', String(DELETED_PROJECT), 'deleted', null),
        entityChange('detector', String(DELETED_DETECTOR), 'created'),
        entityChange('detector', String(DELETED_DETECTOR), 'deleted'),
        entityChange('detector', String(LIVE_DETECTOR), 'created'),
        entityChange('environment', DELETED_ENVIRONMENT, 'created'),
        entityChange('environment', DELETED_ENVIRONMENT, 'deleted'),
        ...Array.from({ length: TARGET_GROUPS }, (_, k) => occurrence(1, `target-${k}`)),
      ],
      good: (i) =>
        i % 10 < 7
          ? occurrence(1 + (i % 5), `good-${i % 97}`)
          : i % 10 < 9
            ? statusChange(1, `target-${i % TARGET_GROUPS}`, i % 3)
            : entityChange('environment', `env-${i % 50}`, 'created'),
      kinds: [
        // numbers in range: ids, types and substatuses are bigint, so any integer JavaScript holds is applied
        extreme(
          'occurrences',
          'project id 2^31',
          setField('/project_id', INT4_MAX_PLUS_1),
          APPLIED,
        ),
        extreme('occurrences', 'project id 2^53-1', setField('/project_id', SAFE_MAX), APPLIED),
        extreme(
          'occurrences',
          'initial priority 2^53-1',
          setField('/initial_issue_priority', SAFE_MAX),
          APPLIED,
        ),
        extreme(
          'occurrences',
          'event project id 2^53-1',
          setField('/event/project_id', SAFE_MAX),
          APPLIED,
        ),
        extreme('occurrences', 'detection time 0', setField('/detection_time', 0), APPLIED),
        extreme(
          'occurrences',
          '1,000 fingerprints',
          (p) =>
            withField(
              p,
              '/fingerprint',
              Array.from({ length: 1000 }, (_, k) => `${fresh()}-${k}`),
            ),
          APPLIED,
        ),
        extreme('occurrences', 'type 2^31', setField('/type', INT4_MAX_PLUS_1), APPLIED),
        extreme('occurrences', 'type -2^31-1', setField('/type', -INT4_MAX_PLUS_1 - 1), APPLIED),
        // past the last instant a timestamp holds
        extreme(
          'occurrences',
          'detection time 1e308',
          setField('/detection_time', 1e308),
          deadLettered('processing_error'),
        ),
        // references
        extreme(
          'occurrences',
          'detector never announced',
          setField('/shoal/detector_id', UNKNOWN_DETECTOR),
          deadLettered('unknown_reference', 'detector'),
        ),
        extreme(
          'occurrences',
          'deleted project',
          setField('/project_id', DELETED_PROJECT),
          deadLettered('stale_reference', 'project'),
        ),
        extreme(
          'occurrences',
          'deleted detector',
          setField('/shoal/detector_id', DELETED_DETECTOR),
          deadLettered('stale_reference', 'detector'),
        ),
        extreme(
          'occurrences',
          'deleted environment',
          (p) =>
            withField(setField('/shoal/environment', DELETED_ENVIRONMENT)(p), '/project_id', 1),
          deadLettered('stale_reference', 'environment'),
        ),
        extreme(
          'statusChanges',
          'project id 2^31 (no group there)',
          setField('/project_id', INT4_MAX_PLUS_1),
          deadLettered('unknown_reference', 'group'),
        ),
        extreme(
          'statusChanges',
          'project id 2^53-1 (no group there)',
          setField('/project_id', SAFE_MAX),
          deadLettered('unknown_reference', 'group'),
        ),
        extreme(
          'statusChanges',
          'substatus 2^31',
          setField('/new_substatus', INT4_MAX_PLUS_1),
          APPLIED,
        ),
        extreme(
          'statusChanges',
          'detector never announced',
          setField('/detector_id', UNKNOWN_DETECTOR),
          deadLettered('unknown_reference', 'detector'),
        ),
        extreme(
          'statusChanges',
          'deleted project',
          setField('/project_id', DELETED_PROJECT),
          deadLettered('stale_reference', 'project'),
        ),
        extreme(
          'statusChanges',
          'deleted detector',
          setField('/detector_id', DELETED_DETECTOR),
          deadLettered('stale_reference', 'detector'),
        ),
        extreme(
          'statusChanges',
          'fingerprint without a group',
          setField('/fingerprint', ['never-grouped']),
          deadLettered('unknown_reference', 'group'),
        ),
        extreme(
          'entityChanges',
          'detector of project 2^31',
          setField('/project_id', INT4_MAX_PLUS_1),
          APPLIED,
        ),
        extreme(
          'entityChanges',
          'detector id 2^31',
          setField('/entity_id', String(INT4_MAX_PLUS_1)),
          APPLIED,
        ),
        extreme(
          'entityChanges',
          'detector id 2^53-1',
          setField('/entity_id', String(SAFE_MAX)),
          APPLIED,
        ),
        // an id as text beyond what JavaScript holds exactly
        extreme(
          'entityChanges',
          'detector id 2^64',
          setField('/entity_id', '18446744073709551616'),
          deadLettered('schema_invalid'),
        ),
      ],
      late: (rounds): Late => {
        // a held status change heads its key (an existing group's); the good changes behind it park
        const held: Late['held'] = [];
        const lateGroups: string[] = [];
        for (let r = 0; r < rounds; r++) {
          const target = `target-${r % TARGET_GROUPS}`;
          held.push(
            {
              kind: 'occurrence naming a detector announced late',
              sample: withDetector(occurrence(1 + (r % 5), `late-${fresh()}`), LATE_DETECTOR),
            },
            {
              kind: 'status change naming a detector announced late (heads its key)',
              sample: statusChange(1, target, r % 3, LATE_DETECTOR),
            },
            ...[1, 2, 3].map((k) => ({
              kind: 'status change parked behind it on its key',
              sample: statusChange(1, target, (r + k) % 3),
            })),
            {
              kind: 'status change for a group whose first occurrence comes late',
              sample: statusChange(1, `late-group-${r}`, 1 + (r % 2)),
            },
          );
          lateGroups.push(`late-group-${r}`);
        }
        return {
          held,
          // the groups first (settled by the next re-drive), then the detector: an entity-change
          // chunk, after which the re-drive settles everything held
          announce: [
            lateGroups.map((f) => occurrence(1, f)),
            [entityChange('detector', String(LATE_DETECTOR), 'created')],
          ],
        };
      },
      async verify(applied, db, ns) {
        return [
          ...(await verifyGroups(applied, db)),
          ...(await verifyGroupEvents(applied, db, ns.topics.groupEvents)),
        ];
      },
    };
  },
};

const occurrencesOf = (applied: FuzzCase[]) =>
  applied.filter((c) => c.topic === 'occurrences').map((c) => c.payload!);
const statusChangesOf = (applied: FuzzCase[]) =>
  applied.filter((c) => c.topic === 'statusChanges').map((c) => c.payload!);
const groupKey = (p: Payload) =>
  `${String(p.project_id)}:${hashOf((p.fingerprint as string[])[0]!)}`;

/** Groups and times seen equal the applied occurrences; each status is the last applied change's. */
async function verifyGroups(applied: FuzzCase[], db: IsolatedDatabase): Promise<Check[]> {
  const expected = new Map<string, number>();
  for (const o of occurrencesOf(applied))
    expected.set(groupKey(o), (expected.get(groupKey(o)) ?? 0) + 1);
  const expectedStatus = new Map<string, string>();
  for (const s of statusChangesOf(applied))
    expectedStatus.set(groupKey(s), STATUS[s.new_status as number]!);
  const { rows } = await db.pool.query<{
    project_id: string;
    primary_hash: string;
    times_seen: string;
    status: string;
  }>(
    `SELECT project_id::text, primary_hash, times_seen::text, status FROM ${groupingTable('groups')}`,
  );
  const actual = new Map(
    rows.map((r) => [`${r.project_id}:${r.primary_hash}`, Number(r.times_seen)]),
  );
  const differ = [...new Set([...expected.keys(), ...actual.keys()])].filter(
    (k) => expected.get(k) !== actual.get(k),
  );
  const statusDiffer = rows.filter(
    (r) => (expectedStatus.get(`${r.project_id}:${r.primary_hash}`) ?? 'unresolved') !== r.status,
  );
  return [
    {
      name: 'groups and times seen equal the applied occurrences (each applied once)',
      ok: differ.length === 0,
      detail: `${actual.size} groups, ${expected.size} expected, sum of times seen ${[...actual.values()].reduce((a, b) => a + b, 0)} of ${[...expected.values()].reduce((a, b) => a + b, 0)}${
        differ.length
          ? `; differ: ${differ
              .slice(0, 3)
              .map((k) => `${k} ${actual.get(k)} vs ${expected.get(k)}`)
              .join(', ')}`
          : ''
      }`,
    },
    {
      name: "each group's status is its last applied status change's",
      ok: statusDiffer.length === 0,
      detail: `${expectedStatus.size} groups changed${statusDiffer.length ? `; differ: ${statusDiffer.length}` : ''}`,
    },
  ];
}

/**
 * On the real group-events topic, once the group_activity flush caught up: one group_created per
 * group, one status_changed per applied change, one release_seen per release and project; an
 * occurrence_grouped only for an applied occurrence, at most once each, on a group not unresolved
 * (which occurrences land on resolved groups depends on how the two topics interleave); per live
 * group, group_activity deltas summing to its times seen; no event id twice.
 */
async function verifyGroupEvents(
  applied: FuzzCase[],
  db: IsolatedDatabase,
  topic: string,
): Promise<Check[]> {
  const caughtUp = async () =>
    (
      await db.pool.query(
        `SELECT 1 FROM ${groupingTable('groups')} WHERE times_seen <> reported_times_seen AND deleted_at IS NULL
         UNION ALL SELECT 1 FROM ${groupingTable('outbox')} WHERE published_at IS NULL`,
      )
    ).rowCount === 0;
  await waitFor('the group_activity flush to catch up', caughtUp, 60_000);
  const events = (await readAll(topic)).map(
    (r) => JSON.parse(r.value!.subarray(5).toString()) as GroupEvent,
  );
  const byId = new Map(events.map((e) => [e.event_id, e]));
  const distinct = [...byId.values()];
  const ofType = (t: GroupEvent['event_type']) => distinct.filter((e) => e.event_type === t);

  const occurrences = occurrencesOf(applied);
  const releases = new Set(
    occurrences.flatMap((o) => {
      const release = (o.event as { release?: unknown } | undefined)?.release;
      return typeof release === 'string' ? [`${String(o.project_id)}\u0000${release}`] : [];
    }),
  );
  const expected = {
    group_created: new Set(occurrences.map(groupKey)).size,
    status_changed: statusChangesOf(applied).length,
    release_seen: releases.size,
  };
  const actual = Object.fromEntries(
    Object.keys(expected).map((t) => [t, ofType(t as GroupEvent['event_type']).length]),
  );
  const seenReleases = new Set(
    ofType('release_seen').map((e) => `${e.project_id}\u0000${e.release}`),
  );

  const appliedIds = new Set(occurrences.map((o) => o.id as string));
  const grouped = ofType('occurrence_grouped');
  const strayGrouped = grouped.filter(
    (e) => !appliedIds.has(e.occurrence_id!) || e.status === 'unresolved',
  );
  const groupedTwice = grouped.length - new Set(grouped.map((e) => e.occurrence_id)).size;

  const { rows: groups } = await db.pool.query<{ id: string; times_seen: string }>(
    `SELECT id::text, times_seen::text FROM ${groupingTable('groups')} WHERE deleted_at IS NULL`,
  );
  const reported = new Map<number, number>();
  for (const e of ofType('group_activity'))
    reported.set(e.group_id, (reported.get(e.group_id) ?? 0) + e.times_seen_delta!);
  const miscounted = groups.filter((g) => reported.get(Number(g.id)) !== Number(g.times_seen));

  return [
    {
      name: 'group events on the real topic: one per new group, applied change and release first seen, none twice',
      ok:
        Object.entries(expected).every(([t, n]) => actual[t] === n) &&
        [...releases].every((r) => seenReleases.has(r)) &&
        distinct.length === events.length,
      detail: `${events.length} events (${distinct.length} distinct); ${Object.entries(expected)
        .map(([t, n]) => `${t} ${actual[t]} of ${n}`)
        .join(', ')}`,
    },
    {
      name: 'occurrence_grouped only for applied occurrences on groups not unresolved, each at most once',
      ok: strayGrouped.length === 0 && groupedTwice === 0,
      detail: `${grouped.length} of ${occurrences.length} occurrences; ${strayGrouped.length} stray, ${groupedTwice} twice`,
    },
    {
      name: "group_activity deltas sum to each live group's times seen",
      ok: miscounted.length === 0,
      detail: `${groups.length} groups; ${miscounted.length} differ${miscounted
        .slice(0, 3)
        .map((g) => `; ${g.id}: ${reported.get(Number(g.id)) ?? 0} of ${g.times_seen}`)
        .join('')}`,
    },
  ];
}
