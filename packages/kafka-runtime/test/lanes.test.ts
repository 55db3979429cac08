import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { PartitionLanes, type Lane, type LaneOptions } from '../src/lanes.js';

// The partition lanes (lanes.ts) on their own: ordering, the concurrency slots, pausing a full
// lane and what a clear or block drops. The consumer runs them against the real stack in every
// other test of this folder (kill-anywhere, rebalance, transient, halts).

const records = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => ({ offset: String(from + i) }) as KafkaMessage);

/** Lets every pending callback and promise run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lanes whose applies record what they took and wait for the test to let each finish. */
function harness(options: Partial<LaneOptions> & { chunk?: number } = {}) {
  const chunk = options.chunk ?? 2;
  const applied: string[] = [];
  const running = new Set<string>();
  let mostAtOnce = 0;
  const gates: (() => void)[] = [];
  const events: string[] = [];
  const errors: unknown[] = [];
  const lanes = new PartitionLanes({
    concurrency: 1,
    highWater: 100,
    pause: (t, p) => events.push(`pause ${t}:${p}`),
    resume: (t, p) => events.push(`resume ${t}:${p}`),
    applyNext: async (lane: Lane) => {
      const taken = lane.peek(chunk);
      const tp = `${lane.topic}:${lane.partition}`;
      running.add(tp);
      mostAtOnce = Math.max(mostAtOnce, running.size);
      const wait = deferred();
      gates.push(wait.resolve);
      await wait.promise;
      running.delete(tp);
      applied.push(`${tp}@${taken.map((r) => r.offset).join(',')}`);
      lane.take(taken);
    },
    onError: (error) => errors.push(error),
    ...options,
  });
  /** Lets every apply waiting now finish, and the lanes move on. */
  const step = async () => {
    await settle();
    for (const open of gates.splice(0)) open();
    await settle();
  };
  return { lanes, applied, events, errors, step, mostAtOnce: () => mostAtOnce };
}

describe('PartitionLanes', () => {
  it('applies each partition in offset order, chunk by chunk, at most `concurrency` at once, taking turns', async () => {
    const h = harness({ concurrency: 2 });
    h.lanes.push('t', 0, records(0, 4), '10');
    h.lanes.push('t', 1, records(0, 2), '10');
    h.lanes.push('t', 2, records(0, 2), '10');
    h.lanes.push('t', 0, records(4, 2), '10');
    for (let i = 0; i < 6; i++) await h.step();
    expect(h.mostAtOnce()).toBe(2);
    expect(h.applied.filter((a) => a.startsWith('t:0'))).toEqual(['t:0@0,1', 't:0@2,3', 't:0@4,5']);
    // partition 2 waited for a slot, then got it before partition 0's second chunk
    expect(h.applied.indexOf('t:2@0,1')).toBeLessThan(h.applied.indexOf('t:0@2,3'));
    expect(h.errors).toEqual([]);
  });

  it('pauses a lane holding highWater records and resumes it at half', async () => {
    const h = harness({ highWater: 4 });
    h.lanes.push('t', 0, records(0, 3), '10');
    expect(h.events).toEqual([]);
    h.lanes.push('t', 0, records(3, 3), '10');
    expect(h.events).toEqual(['pause t:0']);
    await h.step(); // 4 left: still full
    expect(h.events).toEqual(['pause t:0']);
    await h.step(); // 2 left: half
    expect(h.events).toEqual(['pause t:0', 'resume t:0']);
    await h.step();
    expect(h.applied).toEqual(['t:0@0,1', 't:0@2,3', 't:0@4,5']);
  });

  it('a clear during an apply keeps records fetched after it: the applied chunk is not taken from them', async () => {
    const h = harness();
    h.lanes.push('t', 0, records(0, 2), '10');
    await settle(); // the apply of 0,1 is waiting
    h.lanes.clear('t', 0); // e.g. a seek on reassignment
    h.lanes.push('t', 0, records(0, 2), '10'); // fetched again from the seek
    await h.step();
    await h.step();
    expect(h.applied).toEqual(['t:0@0,1', 't:0@0,1']);
  });

  it('a blocked lane drops what it holds and what arrives, and does not resume the partition it paused', async () => {
    const h = harness({ highWater: 2 });
    h.lanes.push('t', 0, records(0, 2), '10');
    expect(h.events).toEqual(['pause t:0']);
    await settle();
    h.lanes.block('t', 0); // e.g. a retry's backoff: the consumer paused and sought it
    expect(h.lanes.isBlocked('t', 0)).toBe(true);
    h.lanes.push('t', 0, records(2, 2), '10');
    await h.step();
    await h.step();
    expect(h.applied).toEqual(['t:0@0,1']); // the chunk being applied finished; nothing else
    expect(h.events).toEqual(['pause t:0']);
    h.lanes.unblock('t', 0);
    h.lanes.push('t', 0, records(0, 2), '10');
    await h.step();
    expect(h.applied).toEqual(['t:0@0,1', 't:0@0,1']);
  });

  it('a reassignment resumes full lanes it empties and forgets the partitions given away', async () => {
    const h = harness({ highWater: 2 });
    h.lanes.push('t', 0, records(0, 4), '10');
    h.lanes.push('t', 1, records(0, 4), '10');
    await settle();
    h.lanes.block('t', 1);
    h.lanes.reassign((_, partition) => partition === 0);
    expect(h.events).toEqual(['pause t:0', 'pause t:1', 'resume t:0']);
    expect(h.lanes.isBlocked('t', 1)).toBe(false);
    await h.step();
    expect(h.applied).toEqual(['t:0@0,1']);
  });

  it('stop waits for the chunk being applied and takes nothing more', async () => {
    const h = harness();
    h.lanes.push('t', 0, records(0, 4), '10');
    await settle();
    let stopped = false;
    const stopping = h.lanes.stop().then(() => (stopped = true));
    await settle();
    expect(stopped).toBe(false);
    await h.step();
    await stopping;
    h.lanes.push('t', 0, records(4, 2), '10');
    await h.step();
    expect(h.applied).toEqual(['t:0@0,1']);
  });

  it('records that arrive just as a lane finishes are applied: a new run starts, at whatever point of its ending they come', async () => {
    // the push lands some microtasks after the lane's last apply: at one depth or another it falls
    // between the loop's last look at the lane and the run's end
    for (let depth = 0; depth < 12; depth++) {
      const applied: string[] = [];
      let pushLater: (() => void) | undefined;
      const lanes = new PartitionLanes({
        concurrency: 1,
        highWater: 100,
        pause: () => undefined,
        resume: () => undefined,
        applyNext: async (lane) => {
          const taken = lane.peek(10);
          await settle();
          applied.push(taken.map((r) => r.offset).join(','));
          lane.take(taken);
          const push = pushLater;
          pushLater = undefined;
          if (push) {
            let chain = Promise.resolve();
            for (let i = 0; i < depth; i++) chain = chain.then(() => undefined);
            void chain.then(push);
          }
        },
        onError: (error) => {
          throw error;
        },
      });
      pushLater = () => lanes.push('t', 0, records(1, 1), '10');
      lanes.push('t', 0, records(0, 1), '10');
      for (let i = 0; i < 4; i++) await settle();
      expect({ depth, applied }).toEqual({ depth, applied: ['0', '1'] });
    }
  });

  it('a lane whose apply throws reports it (the consumer stops) instead of stalling unseen', async () => {
    const failure = new Error('boom');
    const errors: unknown[] = [];
    const lanes = new PartitionLanes({
      concurrency: 1,
      highWater: 10,
      pause: () => undefined,
      resume: () => undefined,
      applyNext: () => Promise.reject(failure),
      onError: (error) => errors.push(error),
    });
    lanes.push('t', 0, records(0, 1), '10');
    await settle();
    expect(errors).toEqual([failure]);
  });
});
