import { ConfigError } from '@shoal/config';
import { dlqTopic, occurrenceKey, type Occurrence } from '@shoal/contracts';
import { metrics } from '@shoal/observability';
import { isolatedDatabase, isolatedTopics } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER } from '../src/index.js';
import {
  counterDatabase,
  counterRun,
  countsOf,
  deletedProjects,
  liveProjects,
  occurrence,
  readAll,
  startCounter,
  waitFor,
  type CounterRun,
} from './support.js';

/**
 * Deleted is not the same as not yet known (DESIGN.md semantics 7), with the counter service, whose
 * projects must be announced (a row in its `projects`): a message naming an unknown project is held
 * while the partition moves on, applied once the project is announced, dead-lettered
 * `unknown_reference` past its deadline; a deleted project is `stale_reference`. On an ordered topic a
 * held message parks its key until it is applied.
 */

const heldIds = async (run: CounterRun) =>
  (
    await run.db.pool.query<{ message_id: string }>(
      'SELECT message_id FROM held_messages ORDER BY seq',
    )
  ).rows.map((r) => r.message_id);

const on = (project: number, seed: string, i: number, fingerprint = 'fp-held'): Occurrence => ({
  ...occurrence(i, { seed }),
  project_id: project,
  fingerprint: [fingerprint],
});
const id = (o: Occurrence) => `occurrence:${o.id}`;

/** The occurrence ids of the group events emitted for `projectId`, in the order they were applied. */
const appliedOrder = async (run: CounterRun, projectId: number) =>
  (
    await run.db.pool.query<{ id: string }>(
      `SELECT payload->>'occurrence_id' AS id FROM outbox_events
       WHERE topic = $1 AND (payload->>'project_id')::int = $2 ORDER BY seq, ordinal`,
      [run.ns.topics.groupEvents, projectId],
    )
  ).rows.map((r) => r.id);

const heldGauge = async (run: CounterRun) =>
  (await metrics.heldMessages.get()).values.find(
    (v) => v.labels.group === run.group && v.labels.topic === run.ns.topics.occurrences,
  )?.value;

describe('an unordered topic', () => {
  let run: CounterRun;
  beforeAll(async () => {
    run = await counterRun('held-unordered', { SHOAL_ORDERED_TOPICS: 'none' });
  });
  afterAll(() => run?.stop());

  it('holds a message naming a project not yet announced while the partition moves on, and applies it once announced', async () => {
    const early = [on(5, 'early', 0), on(5, 'early', 1)];
    const others = [on(1, 'others', 0, 'fp-a'), on(2, 'others', 1, 'fp-b')];
    await run.produce([others[0]!, ...early, others[1]!]);
    await run.settled();
    expect(await heldIds(run)).toEqual(early.map(id));
    expect(await countsOf(run.db.pool)).toEqual({ '1:fp-a': 1, '2:fp-b': 1 });
    expect(await heldGauge(run)).toBe(2);
    // held is neither a failure nor a dead letter
    expect((await run.db.pool.query('SELECT 1 FROM message_failures')).rowCount).toBe(0);

    await liveProjects(run.db.pool, [5]); // the announcement
    await waitFor('the held messages to be applied', async () => (await heldIds(run)).length === 0);
    await run.settled();
    expect((await countsOf(run.db.pool))['5:fp-held']).toBe(2);
    expect(await appliedOrder(run, 5)).toEqual(early.map((o) => o.id));
    // a re-send of one is a duplicate: it was applied once
    await run.produce([early[0]!]);
    await run.settled();
    expect((await countsOf(run.db.pool))['5:fp-held']).toBe(2);
  });
});

describe('a short hold deadline', () => {
  let run: CounterRun;
  beforeAll(async () => {
    run = await counterRun('held-deadline', {
      SHOAL_ORDERED_TOPICS: 'none',
      SHOAL_HOLD_DEADLINE_SECONDS_PROJECT: '3',
    });
    await deletedProjects(run.db.pool, [8]);
  });
  afterAll(() => run?.stop());

  it('dead-letters one never announced as unknown_reference past its deadline, naming the entity, and never drops it', async () => {
    const never = on(6, 'never', 0);
    await run.produce([never]);
    await run.settled();
    expect(await heldIds(run)).toEqual([id(never)]);
    await waitFor(
      'the hold to expire into the DLQ',
      async () =>
        (await readAll(dlqTopic(run.ns.topics.occurrences))).some(
          (r) => r.headers[HEADER.messageId] === id(never),
        ),
      30_000,
    );
    const letter = (await readAll(dlqTopic(run.ns.topics.occurrences))).find(
      (r) => r.headers[HEADER.messageId] === id(never),
    )!;
    expect(letter.key).toBe(occurrenceKey(never));
    expect(letter.headers).toMatchObject({
      [DLQ_HEADER.reason]: 'unknown_reference',
      [DLQ_HEADER.entity]: 'project',
      [DLQ_HEADER.entityId]: '6',
      [DLQ_HEADER.errorClass]: 'UnknownReferenceError',
    });
    expect(letter.headers[DLQ_HEADER.errorMessage]).toMatch(
      /^project 6 was never announced \(held \d+ s\)$/,
    );
    expect(await heldIds(run)).toEqual([]);
    const { rows } = await run.db.pool.query(
      'SELECT reason, entity, entity_id, action FROM message_failures',
    );
    expect(rows).toEqual([
      { reason: 'unknown_reference', entity: 'project', entity_id: '6', action: 'dlq' },
    ]);
  });

  it('dead-letters one naming a deleted project at once, saying when it was deleted', async () => {
    const gone = on(8, 'gone', 0);
    await run.produce([gone]);
    await run.settled();
    expect(await heldIds(run)).toEqual([]);
    const letter = (await readAll(dlqTopic(run.ns.topics.occurrences))).find(
      (r) => r.headers[HEADER.messageId] === id(gone),
    )!;
    expect(letter.headers).toMatchObject({
      [DLQ_HEADER.reason]: 'stale_reference',
      [DLQ_HEADER.entity]: 'project',
      [DLQ_HEADER.entityId]: '8',
    });
    expect(letter.headers[DLQ_HEADER.errorMessage]).toMatch(
      /^project 8 was deleted at \d{4}-\d\d-\d\dT/,
    );
  });
});

describe('an ordered topic', () => {
  let run: CounterRun;
  beforeAll(async () => {
    run = await counterRun('held-ordered', {
      SHOAL_ORDERED_TOPICS: 'occurrences',
    });
  });
  afterAll(() => run?.stop());

  it("a held message parks its key: the key's later messages wait behind it, other keys flow, and it drains in order once announced", async () => {
    const head = on(5, 'ordered', 0);
    const behind = Array.from({ length: 20 }, (_, i) => on(5, 'ordered', 1 + i));
    const others = Array.from({ length: 5 }, (_, i) => on(1, 'ordered-others', i, `fp-${i}`));
    await run.produce([head, ...behind.slice(0, 10), ...others, ...behind.slice(10)]);
    await run.settled();
    expect(await heldIds(run)).toEqual([id(head)]);
    const { rows: parked } = await run.db.pool.query<{ message_id: string }>(
      'SELECT message_id FROM parked_messages ORDER BY seq',
    );
    expect(parked.map((r) => r.message_id)).toEqual(behind.map(id));
    expect(Object.keys(await countsOf(run.db.pool))).toHaveLength(5);

    await liveProjects(run.db.pool, [5]);
    await waitFor('the key to drain', async () => {
      const { rowCount } = await run.db.pool.query('SELECT 1 FROM parked_keys');
      return rowCount === 0 && (await heldIds(run)).length === 0;
    });
    await run.settled();
    expect(await appliedOrder(run, 5)).toEqual([head, ...behind].map((o) => o.id));
    // a new arrival on the key after the drain applies at once
    const late = on(5, 'ordered', 21);
    await run.produce([late]);
    await run.settled();
    expect((await countsOf(run.db.pool))['5:fp-held']).toBe(22);
  });
});

it('refuses a per-kind variable naming a kind the service does not look up', async () => {
  const ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  const db = await isolatedDatabase(counterDatabase);
  try {
    const started = startCounter(ns, db.pool, {
      env: { SHOAL_REFERENCE_DETECTOR: 'create', SHOAL_HOLD_DEADLINE_SECONDS_PROJECT: '5' },
    });
    await expect(started).rejects.toBeInstanceOf(ConfigError);
    await expect(started).rejects.toThrow(
      /SHOAL_REFERENCE_DETECTOR: an entity kind this service looks up \(project\)/,
    );
  } finally {
    await Promise.all([db.drop(), ns.drop()]);
  }
});
