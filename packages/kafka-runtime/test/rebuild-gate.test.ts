import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { RebuildGate } from '../src/rebuild-gate.js';

// The rebuild's gate (rebuild-gate.ts) on its own: what a partition may apply, given its stop
// offset and the other partitions' next records. The whole rebuild runs against the real stack in
// packages/cli/test/rebuild.test.ts.

const records = (...at: [offset: number, timestamp: number][]) =>
  at.map(
    ([offset, timestamp]) =>
      ({ offset: String(offset), timestamp: String(timestamp) }) as KafkaMessage,
  );
const offsets = (ms: KafkaMessage[] | undefined) => ms?.map((m) => Number(m.offset));

describe('RebuildGate', () => {
  it('never lets a partition past its stop offset, and finishes once every partition reached its stop', async () => {
    const gate = new RebuildGate([
      { topic: 'a', partition: 0, stop: 8, low: 0 },
      // nothing to apply: its stop is not past its log start
      { topic: 'b', partition: 0, stop: 3, low: 3 },
    ]);
    let finished = false;
    void gate.finished.then(() => (finished = true));
    expect(
      offsets(await gate.admit('a', 0, records([5, 1], [6, 1], [7, 1], [8, 1], [9, 1]))),
    ).toEqual([5, 6, 7]);
    expect(finished).toBe(false);
    gate.applied('a', 0, 8);
    await gate.finished;
    expect(await gate.admit('a', 0, records([8, 1]))).toEqual([]);
  });

  it('applies across partitions in record-time order: a later record waits for earlier ones elsewhere', async () => {
    const gate = new RebuildGate(
      [
        { topic: 'occurrences', partition: 0, stop: 2, low: 0 },
        { topic: 'entity-changes', partition: 0, stop: 1, low: 0 },
      ],
      5_000,
    );
    const applied: string[] = [];
    const run = async (topic: string, batch: KafkaMessage[]) => {
      let rest = batch;
      while (rest.length) {
        const admitted = (await gate.admit(topic, 0, rest))!;
        for (const m of admitted) applied.push(`${topic}@${m.timestamp}`);
        gate.applied(topic, 0, Number(admitted.at(-1)!.offset) + 1);
        rest = rest.slice(admitted.length);
      }
    };
    // the occurrences' batch comes first; the entity change (time 20) between its two records
    await Promise.all([
      run('occurrences', records([0, 10], [1, 30])),
      new Promise((r) => setTimeout(r, 50)).then(() => run('entity-changes', records([0, 20]))),
    ]);
    expect(applied).toEqual(['occurrences@10', 'entity-changes@20', 'occurrences@30']);
  });

  it('gives up waiting for a partition whose records are not fetched yet, so the caller seeks back', async () => {
    const gate = new RebuildGate(
      [
        { topic: 'a', partition: 0, stop: 5, low: 0 },
        { topic: 'b', partition: 0, stop: 5, low: 0 },
      ],
      100,
    );
    const started = Date.now();
    expect(await gate.admit('a', 0, records([0, 10]))).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    // once b's next record is known and later, a goes on
    const b = gate.admit('b', 0, records([0, 50]));
    expect(offsets(await gate.admit('a', 0, records([0, 10], [1, 60])))).toEqual([0]);
    gate.applied('a', 0, 1);
    expect(await b).toBeUndefined(); // a's next record is not known until it asks again
  });

  it('refuses a partition it was given no stop for', async () => {
    const gate = new RebuildGate([{ topic: 'a', partition: 0, stop: 1, low: 0 }]);
    await expect(gate.admit('a', 1, records([0, 1]))).rejects.toThrow('no stop offset for a:1');
  });

  it('lets a partition run ahead of another of its own topic by up to a second of record time', async () => {
    const gate = new RebuildGate(
      [
        { topic: 'occurrences', partition: 0, stop: 9, low: 0 },
        { topic: 'occurrences', partition: 1, stop: 9, low: 0 },
      ],
      5_000,
    );
    const waiting = gate.admit('occurrences', 1, records([0, 2000]));
    expect(
      offsets(await gate.admit('occurrences', 0, records([0, 50], [1, 2500], [2, 3100]))),
    ).toEqual([0, 1]);
    gate.applied('occurrences', 0, 2);
    // partition 1 (2000) may go once partition 0's next record (3100) is known
    void gate.admit('occurrences', 0, records([2, 3100]));
    expect(offsets(await waiting)).toEqual([0]);
  });
});
