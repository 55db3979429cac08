import {
  Codec,
  createRegistry,
  problemsOf,
  type EntityChange,
  type Occurrence,
  type StatusChange,
  type TopicKey,
} from '@shoal/contracts';
import {
  connections,
  extremeVariants,
  incompressible,
  kafka,
  uniqueName,
  waitFor,
  withAdmin,
  type IsolatedDatabase,
} from '@shoal/testing';
import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hashOf } from '../src/fingerprints.js';
import { groupingTestKit, uniqueUuid } from './kit.js';

/**
 * Every value the schemas accept for grouping's topics is stored or handled by policy, and the
 * partition moves on: each extreme value of each numeric and string field (from the JSON Schemas),
 * one field at a time, through the real codec, Kafka and grouping consumer on PostgreSQL.
 */

const { fresh, start } = groupingTestKit();
const HEADER = 'shoal.message-id';
const HELD = 1; // the base issue type: its first occurrence is held back whole, its twin makes the group
const issueTypes = new Map([[HELD, { noise: { threshold: 2, windowSeconds: 1e9 } }]]);
const ANNOUNCED_DETECTORS = [1, Number.MAX_SAFE_INTEGER];
const NUL_TITLE = 'a\u0000b';

let db: IsolatedDatabase;
let topics: Record<TopicKey, string>;
let producer: Producer;
let codec: Codec;
let group: string;

beforeAll(async () => {
  const made = await fresh();
  db = made.db;
  topics = made.ns.topics;
  codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), topics);
  producer = kafka().producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  group = uniqueName('grouping-');
  // a status change naming a detector never announced is held, then dead-lettered after a second
  await start(made.ns, db, group, {
    issueTypes,
    env: { SHOAL_HOLD_DEADLINE_SECONDS_DETECTOR: '1', SHOAL_HOLD_DEADLINE_SECONDS_GROUP: '1' },
  });
});
afterAll(() => producer.disconnect());

interface Sent {
  id: string;
  what: string;
  /** The reason it must fail with (handled by policy); undefined: it must be applied. */
  fails?: string;
}

/** Publishes framed records, each under its own message id, in requests under Kafka's 1 MB. */
async function publish(
  key: TopicKey,
  records: { id: string; key: string; value: unknown; partition?: number }[],
) {
  let chunk: { key: string; value: Buffer; headers: Record<string, string>; partition?: number }[] =
    [];
  let bytes = 0;
  const flush = async () => {
    if (chunk.length) await producer.send({ topic: topics[key], acks: -1, messages: chunk });
    chunk = [];
    bytes = 0;
  };
  for (const r of records) {
    const value = await codec.encode(key, r.value as never);
    if (bytes + value.length > 700_000) await flush();
    chunk.push({ key: r.key, value, headers: { [HEADER]: r.id }, partition: r.partition });
    bytes += value.length;
  }
  await flush();
}

const outcomes = async (ids: string[]) => {
  const { rows } = await db.pool.query<{ message_id: string; reason: string | null }>(
    `SELECT message_id, NULL AS reason FROM processed_messages WHERE consumer_group = $1 AND message_id = ANY($2) AND kind <> 'dead_lettered'
     UNION ALL SELECT message_id, reason FROM message_failures WHERE consumer_group = $1 AND message_id = ANY($2)`,
    [group, ids],
  );
  return new Map(rows.map((r) => [r.message_id, r.reason]));
};

async function settled(sent: Sent[], what: string) {
  const ids = sent.map((s) => s.id);
  await waitFor(what, async () => (await outcomes(ids)).size === ids.length, 240_000);
}

const accepted = <V extends { message: unknown }>(key: TopicKey, variants: V[]) =>
  variants.filter((v) => problemsOf(key, v.message).length === 0);

const occurrenceBase = (n: number): Occurrence => ({
  id: uniqueUuid(),
  project_id: 1,
  fingerprint: [`extreme-${n}`],
  issue_title: `title ${n}`,
  type: HELD,
  detection_time: 1764000000 + n,
  level: 'error',
  culprit: 'culprit',
  subtitle: 'subtitle',
  evidence_data: { n },
  evidence_display: [{ name: 'n', value: 'v', important: true }],
  event: {
    event_id: uniqueUuid().replace(/-/g, ''),
    project_id: 1,
    platform: 'node',
    release: 'app@1',
    environment: 'production',
    tags: [['a', 'b']],
  },
  shoal: {
    trace_id: 'trace',
    request_id: 'request',
    environment: 'production',
    dedup_hints: { stack_frames: ['frame'] },
  },
});

const statusChangeBase = (n: number): StatusChange => ({
  id: uniqueUuid(),
  fingerprint: [`status-${n}`],
  project_id: 1,
  new_status: 1,
  new_substatus: null,
  detector_id: null,
  activity_data: {},
  update_date: '2026-11-25T12:00:00.000Z',
  payload_type: 'status_change',
  shoal: { trace_id: 'trace', request_id: 'request', resolved_in_release: 'app@1' },
});

const entityChange = (kind: EntityChange['entity_kind'], id: string): EntityChange => ({
  event_id: uniqueUuid(),
  entity_kind: kind,
  entity_id: id,
  project_id: 1,
  change: 'created',
  occurred_at: '2026-11-25T12:00:00.000Z',
  name: 'name',
  actor: 'actor',
});

it('applies, or handles by policy, every extreme value of every field grouping reads; no partition wedges', async () => {
  // 1. entity changes: each field's extremes on an environment and on a release, detectors the status changes name,
  //    and project ids as text, one beyond what JavaScript holds exactly
  const entities: Sent[] = [];
  const entityRecords: { id: string; key: string; value: unknown }[] = [
    ...accepted('entityChanges', [
      ...extremeVariants('entityChanges', (n) => ({ ...entityChange('environment', `env-${n}`) })),
      ...extremeVariants('entityChanges', (n) => ({
        ...entityChange('release', `release-${n}`),
        released_at: '2026-11-25T11:00:00.000Z',
        commits: ['9fceb02d0ae598e95dc970b74767f19372d61af8'],
      })),
    ]).map((v, i) => ({ id: `entity:${i}`, what: `entity ${v.pointer} = ${v.label}`, v })),
  ].map(({ id, what, v }) => {
    entities.push({ id, what });
    return { id, key: id, value: v.message };
  });
  for (const detector of ANNOUNCED_DETECTORS) {
    const id = `entity:detector:${detector}`;
    entities.push({ id, what: `detector ${detector}` });
    entityRecords.push({ id, key: id, value: entityChange('detector', String(detector)) });
  }
  for (const [label, projectId, fails] of [
    ['2^53 − 1', String(Number.MAX_SAFE_INTEGER), undefined],
    ['2^53 + 1', '9007199254740993', 'schema_invalid'],
    ['not a number', 'seven', 'schema_invalid'],
  ] as const) {
    const id = `entity:project:${label}`;
    entities.push({ id, what: `project entity id ${label}`, fails });
    entityRecords.push({ id, key: id, value: entityChange('project', projectId) });
  }
  await publish('entityChanges', entityRecords);
  await settled(entities, 'every entity change applied or failed');

  // 2. occurrences: each accepted variant, then a twin (another id) that makes its group from the
  //    held-back first; plus the occurrences the status changes below resolve
  const occurrences: Sent[] = [];
  const occurrenceRecords: { id: string; key: string; value: Occurrence }[] = [];
  for (const [i, v] of accepted(
    'occurrences',
    extremeVariants('occurrences', occurrenceBase),
  ).entries()) {
    const message = v.message as unknown as Occurrence;
    const time = message.detection_time;
    const fails = Number.isNaN(new Date(time * 1000).getTime()) ? 'processing_error' : undefined;
    const what = `occurrence ${v.pointer} = ${v.label}`;
    occurrences.push({ id: `occurrence:${i}`, what, fails });
    occurrences.push({ id: `occurrence:${i}:twin`, what: `${what} (twin)`, fails });
    occurrenceRecords.push(
      { id: `occurrence:${i}`, key: `k${i}`, value: message },
      { id: `occurrence:${i}:twin`, key: `k${i}`, value: { ...message, id: uniqueUuid() } },
    );
  }
  // free-form objects hold any key and number; one held for good, to read back exactly
  const freeForm = {
    ...occurrenceBase(-1),
    fingerprint: ['free-form'],
    evidence_data: { '\u0000': '\u0000', '\ud800': 'x\udc00', huge: 1e308, beyond: 2 ** 60 },
    activity: { nested: [NUL_TITLE] },
  } as Occurrence;
  occurrences.push({ id: 'occurrence:free-form', what: 'free-form fields' });
  occurrenceRecords.push({ id: 'occurrence:free-form', key: 'free-form', value: freeForm });

  const statusVariants = accepted(
    'statusChanges',
    extremeVariants('statusChanges', statusChangeBase),
  ).map((v) => ({ ...v, message: v.message as unknown as StatusChange }));
  for (const [i, v] of statusVariants.entries()) {
    const id = `occurrence:for-status:${i}`;
    occurrences.push({ id, what: `the group of status change ${v.pointer} = ${v.label}` });
    occurrenceRecords.push({
      id,
      key: `s${i}`,
      value: {
        ...occurrenceBase(10_000 + i),
        type: 2,
        project_id: v.message.project_id,
        fingerprint: v.message.fingerprint,
      },
    });
  }
  await publish('occurrences', occurrenceRecords);
  await settled(occurrences, 'every occurrence applied or failed');

  // 3. status changes: each accepted variant of each field, on a group that exists
  const statusChanges: Sent[] = statusVariants.map((v, i) => ({
    id: `status:${i}`,
    what: `status change ${v.pointer} = ${v.label}`,
    fails:
      (v.pointer === '/detector_id' && !ANNOUNCED_DETECTORS.includes(v.value as number)) ||
      // a change naming a group by id: group 1 (the first made) exists, a larger id never did
      (v.pointer === '/shoal/group_id' && v.value !== 1)
        ? 'unknown_reference'
        : undefined,
  }));
  await publish(
    'statusChanges',
    statusVariants.map((v, i) => ({ id: `status:${i}`, key: `s${i}`, value: v.message })),
  );
  await settled(statusChanges, 'every status change applied or failed');

  // every one applied, or failed for the reason its value calls for
  const sent = [...entities, ...occurrences, ...statusChanges];
  const outcome = await outcomes(sent.map((s) => s.id));
  const wrong = sent
    .filter((s) => outcome.get(s.id) !== (s.fails ?? null))
    .map((s) => `${s.what}: ${outcome.get(s.id) ?? 'applied'}, expected ${s.fails ?? 'applied'}`);
  expect(wrong).toEqual([]);
  expect(occurrences.filter((o) => !o.fails).length).toBeGreaterThan(300);

  // 4. the partitions moved on: a good message on every partition after them is applied
  const good: Sent[] = [];
  for (const key of ['occurrences', 'statusChanges', 'entityChanges'] as const) {
    const partitions = (await withAdmin((a) => a.fetchTopicOffsets(topics[key]))).length;
    const records = Array.from({ length: partitions }, (_, partition) => {
      const id = `good:${key}:${partition}`;
      good.push({ id, what: id });
      const value =
        key === 'occurrences'
          ? { ...occurrenceBase(20_000 + partition), type: 2 }
          : key === 'statusChanges'
            ? { ...statusVariants[0]!.message, id: uniqueUuid() }
            : entityChange('environment', `good-${partition}`);
      return { id, key: id, value, partition };
    });
    await publish(key, records);
  }
  await settled(good, 'the good messages after them');
  expect([...(await outcomes(good.map((g) => g.id))).values()]).toEqual(good.map(() => null));

  // stored, not refused: NUL as the text \u0000, long values whole, 64-bit-sized ids exact
  const stored = async (sql: string, params: unknown[]) =>
    (await db.pool.query<{ v: unknown }>(sql, params)).rows.map((r) => r.v);
  expect(await stored(`SELECT title AS v FROM groups WHERE title = $1`, ['a\\u0000b'])).toEqual([
    'a\\u0000b',
  ]);
  expect(
    await stored('SELECT length(title) AS v FROM groups WHERE length(title) > 100000', []),
  ).toEqual([incompressible().length]);
  expect(
    await stored(
      'SELECT count(*)::int AS v FROM group_environments WHERE length(environment) > 100000',
      [],
    ),
  ).toEqual([1]);
  expect(
    await stored('SELECT id AS v FROM projects WHERE id = $1', [Number.MAX_SAFE_INTEGER]),
  ).toEqual([Number.MAX_SAFE_INTEGER]);
  expect(
    await stored('SELECT occurrence AS v FROM held_occurrences WHERE primary_hash = $1', [
      hashOf('free-form'),
    ]),
  ).toEqual([freeForm]);
}, 600_000);
