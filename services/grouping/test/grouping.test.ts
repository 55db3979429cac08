import fs from 'node:fs';
import path from 'node:path';
import { dlqTopic, schemasDir, type Occurrence } from '@shoal/contracts';
import { withTransaction } from '@shoal/db';
import type { HandlerContext, Message } from '@shoal/kafka-runtime';
import { kafka, uniqueName, waitFor, withAdmin } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { groupingHandler } from '../src/handler.js';
import { groupingTestKit, occurrence, uniqueUuid } from './kit.js';

const { fresh, start } = groupingTestKit();

describe('grouping', () => {
  it('two transactions racing on the same new hash create one group', async () => {
    const { ns, db } = await fresh();
    const handler = groupingHandler({ groupEvents: ns.topics.groupEvents, issueTypes: new Map() });
    const ctx = { emit: () => undefined, logger: undefined } as unknown as HandlerContext<unknown>;
    const message = (i: number): Message<Occurrence> => ({
      topic: ns.topics.occurrences,
      topicKey: 'occurrences',
      partition: i,
      offset: 0,
      key: null,
      headers: {},
      timestamp: Date.now(),
      messageId: `m${i}`,
      value: occurrence(i, 'race'),
    });
    await Promise.all(
      [0, 1, 2, 3].map((i) =>
        withTransaction(db.pool, (tx) => handler([message(i)], tx, ctx as never)),
      ),
    );
    const { rows } = await db.pool.query('SELECT short_number::int, times_seen::int FROM groups');
    expect(rows).toEqual([{ short_number: 1, times_seen: 4 }]);
  });

  it('stale references (deleted project, deleted environment, unknown detector, status change without a group) are dead-lettered with their entity; the rest flows', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    // tombstones and a known detector arrive on the entity-changes topic
    const admin = kafka().producer();
    await admin.connect();
    const change = (
      entity_kind: string,
      entity_id: string,
      change: string,
      project_id?: number,
    ) => ({
      value: JSON.stringify({
        event_id: '6f5e4d3c-2b1a-4098-8776-' + uniqueUuid().slice(-12),
        entity_kind,
        entity_id,
        change,
        occurred_at: new Date().toISOString(),
        ...(project_id ? { project_id } : {}),
      }),
    });
    await admin.send({
      topic: ns.topics.entityChanges,
      messages: [
        change('project', '66', 'deleted'),
        change('environment', 'staging', 'deleted', 5),
        change('detector', '3', 'created', 5),
      ],
    });
    await admin.disconnect();
    await waitFor(
      'the projection',
      async () => (await db.pool.query('SELECT 1 FROM detectors WHERE id = 3')).rowCount === 1,
    );

    const staleProject = occurrence(1, 'a', 66);
    const staleEnv = occurrence(2, 'b', 5, { shoal: { environment: 'staging' } });
    const unknownDetector = occurrence(3, 'c', 5, { shoal: { detector_id: 99 } });
    const fine = [
      occurrence(4, 'd', 5, { shoal: { environment: 'production', detector_id: 3 } }),
      occurrence(5, 'e', 5),
    ];
    const before = (
      await withAdmin((a) => a.fetchTopicOffsets(dlqTopic(ns.topics.occurrences)))
    ).reduce((n, p) => n + Number(p.high), 0);
    await Promise.all(
      [staleProject, staleEnv, unknownDetector, ...fine].map((o) => producer.publishOccurrence(o)),
    );
    await producer.publishStatusChange({
      project_id: 5,
      fingerprint: ['never-seen'],
      new_status: 1,
      new_substatus: null,
    });
    await producer.publishStatusChange({
      project_id: 5,
      fingerprint: ['d'],
      new_status: 1,
      new_substatus: null,
    });

    await waitFor(
      'failures recorded',
      async () => (await db.pool.query('SELECT 1 FROM message_failures')).rowCount === 4,
    );
    const { rows: failures } = await db.pool.query(
      'SELECT reason, entity, action FROM message_failures ORDER BY entity',
    );
    expect(failures).toEqual([
      { reason: 'stale_reference', entity: 'detector', action: 'dlq' },
      { reason: 'stale_reference', entity: 'environment', action: 'dlq' },
      { reason: 'stale_reference', entity: 'group', action: 'dlq' },
      { reason: 'stale_reference', entity: 'project', action: 'dlq' },
    ]);
    await waitFor(
      'the resolution',
      async () =>
        (await db.pool.query("SELECT 1 FROM groups WHERE status = 'resolved'")).rowCount === 1,
    );
    expect((await db.pool.query('SELECT count(*)::int AS n FROM groups')).rows[0].n).toBe(2);
    const { rows: envs } = await db.pool.query(
      'SELECT environment, times_seen::int FROM group_environments',
    );
    expect(envs).toEqual([{ environment: 'production', times_seen: 1 }]);
    const after = (
      await withAdmin((a) => a.fetchTopicOffsets(dlqTopic(ns.topics.occurrences)))
    ).reduce((n, p) => n + Number(p.high), 0);
    expect(after - before).toBe(3);
  });

  it('a Sentry issue-platform occurrence, unchanged, becomes a group', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    const sentry = JSON.parse(
      fs.readFileSync(
        path.join(schemasDir, 'examples', 'occurrence.sentry-monitor-failure.json'),
        'utf8',
      ),
    ) as Occurrence;
    await producer.publishOccurrence(sentry);
    await waitFor(
      'the group',
      async () => (await db.pool.query('SELECT 1 FROM groups WHERE project_id = 1')).rowCount! >= 1,
    );
    const { rows } = await db.pool.query(
      "SELECT short_id, level, title, group_type FROM groups WHERE title = 'Monitor failure: poll_service'",
    );
    expect(rows).toEqual([
      {
        short_id: 'P1-1',
        level: 'error',
        title: 'Monitor failure: poll_service',
        group_type: 4001,
      },
    ]);
    const { rows: env } = await db.pool.query('SELECT environment FROM group_environments');
    expect(env).toEqual([{ environment: 'us' }]);
  });
});
