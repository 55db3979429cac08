import { isolatedTopics, kafka, type IsolatedTopics } from '@shoal/testing';
import type { Admin, KafkaMessage } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OffsetGuard, recordIdentity } from '../src/offset-guard.js';
import { produceRaw, readAll, type TopicRecord } from './support.js';

/**
 * The guard against the real broker's log: 30 records on one partition, then the first 15
 * deleted as retention would.
 */

let ns: IsolatedTopics;
let topic: string;
let admin: Admin;
let log: TopicRecord[];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 }, register: false });
  topic = ns.topics.occurrences;
  await produceRaw(
    topic,
    Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: Buffer.from(`record ${i}`) })),
    0,
  );
  log = (await readAll(topic)).sort((a, b) => Number(a.offset) - Number(b.offset));
  admin = kafka().admin();
  await admin.connect();
});
afterAll(async () => {
  await admin?.disconnect();
  await ns.drop();
});

/** The log's records from `from` on, as a fetch delivers them. */
const fetchedFrom = (from: number): KafkaMessage[] =>
  log.slice(from).map(
    (r) =>
      ({
        offset: r.offset,
        key: r.key === null ? null : Buffer.from(r.key),
        value: r.value,
        timestamp: r.timestamp,
        headers: {},
        attributes: 0,
      }) as KafkaMessage,
  );

const stored = (next: number, lastRecordId: string | null = null) => ({
  next,
  lastRecordId,
  haltedReason: null,
});

describe('the offset guard', () => {
  it('after a revoke and a reassignment, a fetch ahead of PostgreSQL is sought back again, never taken for a gap', async () => {
    const guard = new OffsetGuard(admin, 'earliest');
    expect(await guard.assigned(topic, 0, { next: 10, lastRecordId: null })).toBe(10);
    // the assignment's seek lost the race: the fetch starts at Kafka's committed offset
    expect(await guard.check(topic, 0, stored(10), fetchedFrom(20))).toEqual({
      action: 'seek',
      to: 10,
      repeated: false,
    });
    // revoked and assigned again before anything applied: the same race, sought back quietly again
    await guard.assigned(topic, 0, { next: 10, lastRecordId: null });
    expect(await guard.check(topic, 0, stored(10), fetchedFrom(20))).toEqual({
      action: 'seek',
      to: 10,
      repeated: false,
    });
    // ahead again within one assignment: not the race; the consumer retries it and it escalates
    expect(await guard.check(topic, 0, stored(10), fetchedFrom(20))).toEqual({
      action: 'seek',
      to: 10,
      repeated: true,
    });
    expect(await guard.check(topic, 0, stored(10), fetchedFrom(10))).toEqual({
      action: 'apply',
      from: 10,
    });
  });

  it('verifies the record before the stored offset on assignment, and halts on a mismatch', async () => {
    const guard = new OffsetGuard(admin, 'earliest');
    const identity = recordIdentity(fetchedFrom(9)[0]!);
    // the assignment seeks to the record before the stored offset, to compare it
    expect(await guard.assigned(topic, 0, { next: 10, lastRecordId: identity })).toBe(9);
    expect(await guard.check(topic, 0, stored(10, identity), fetchedFrom(9))).toEqual({
      action: 'apply',
      from: 10,
    });

    await guard.assigned(topic, 0, { next: 10, lastRecordId: 'another log' });
    expect(await guard.check(topic, 0, stored(10, 'another log'), fetchedFrom(9))).toMatchObject({
      action: 'halt',
      reason: expect.stringContaining('the record at offset 9 is not the one last applied'),
    });
    // a fetch that did not reach back to it is sought back to it first
    await guard.assigned(topic, 0, { next: 10, lastRecordId: 'another log' });
    expect(await guard.check(topic, 0, stored(10, 'another log'), fetchedFrom(10))).toEqual({
      action: 'seek',
      to: 9,
      repeated: false,
    });

    // PostgreSQL is past the end of the log, identity known or not
    await guard.assigned(topic, 0, { next: 40, lastRecordId: null });
    expect(await guard.check(topic, 0, stored(40), fetchedFrom(0))).toMatchObject({
      action: 'halt',
      reason: expect.stringContaining('the stored next offset 40 is past the end of the log'),
    });
  });

  it('accepts a gap only below the low watermark (retention), and seeks back to it otherwise', async () => {
    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '15' }] });
    const guard = new OffsetGuard(admin, 'earliest');
    await guard.assigned(topic, 0, { next: 10, lastRecordId: recordIdentity(fetchedFrom(9)[0]!) });
    // the record to verify is gone with the rest below offset 15: the gap is retention's, named
    expect(
      await guard.check(topic, 0, stored(10, recordIdentity(fetchedFrom(9)[0]!)), fetchedFrom(15)),
    ).toEqual({ action: 'apply', from: 15, gone: { from: 10, to: 14 } });
    // a fetch past the low watermark is sought back to it
    await guard.assigned(topic, 0, { next: 10, lastRecordId: null });
    expect(await guard.check(topic, 0, stored(10), fetchedFrom(20))).toEqual({
      action: 'seek',
      to: 15,
      repeated: false,
    });
  });
});
