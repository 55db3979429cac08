import { randomUUID } from 'node:crypto';
import type { LifecycleCommand } from '@shoal/contracts';
import { isolatedTopics, readAll, type IsolatedTopics } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oneRequestAtATime } from '../src/api/publish.js';
import { testProducer, unreachableProducer } from './api-support.js';

/**
 * The API's commands go to the broker one request at a time (publish.ts), against the real broker:
 * what comes while a request is on its way goes in the next one, and a request the broker refuses
 * fails only its own commands.
 */

let topics: IsolatedTopics;
beforeAll(async () => {
  topics = await isolatedTopics();
});
afterAll(() => topics.drop());

const note = (issue: number, text: string): LifecycleCommand => ({
  command_id: randomUUID(),
  command: 'add_note',
  issue_id: issue,
  actor: 'agent-a',
  origin: 'agent',
  issued_at: new Date().toISOString(),
  note: text,
});

/** `publish` counted: in how many turns of the event loop it was called, and whether a turn began while an earlier call was on its way. */
function counted(publish: (c: LifecycleCommand) => Promise<unknown>) {
  const seen = { onItsWay: 0, turns: 0, overlapped: false };
  let turn = false;
  const counting = async (command: LifecycleCommand) => {
    if (!turn) {
      seen.turns++;
      seen.overlapped ||= seen.onItsWay > 0;
      turn = true;
      setImmediate(() => (turn = false));
    }
    seen.onItsWay++;
    try {
      return await publish(command);
    } finally {
      seen.onItsWay--;
    }
  };
  return { seen, counting };
}

describe('one request at a time', () => {
  it('commands that come while one is on its way go together, next; every one is acknowledged', async () => {
    const producer = testProducer(topics);
    try {
      const { seen, counting } = counted((c) => producer.publishLifecycleCommand(c));
      const publish = oneRequestAtATime(
        counting as (c: LifecycleCommand) => ReturnType<typeof producer.publishLifecycleCommand>,
      );
      const first = publish(note(1, 'first'));
      // 200 more over the next turns, while the first is on its way
      const more: Promise<unknown>[] = [];
      for (let i = 0; i < 4; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        for (let j = 0; j < 50; j++) more.push(publish(note(2 + j, `more ${i}-${j}`)));
      }
      const published = await Promise.all([first, ...more]);
      expect(published).toHaveLength(201);
      // the first alone, then what waited for its acknowledgement together: never one a turn, never
      // one request beside another (the broker acknowledges in well under four turns' time? not
      // assumed: only that the 200 did not go as they came)
      expect(seen.overlapped).toBe(false);
      expect(seen.turns).toBeGreaterThanOrEqual(2);
      expect(seen.turns).toBeLessThanOrEqual(5);
      expect(await readAll(topics.topics.lifecycleCommands)).toHaveLength(201);
    } finally {
      await producer.close();
    }
  });

  it('a request the broker does not acknowledge fails its own commands, and the next request still goes', async () => {
    const dead = await unreachableProducer(topics);
    try {
      const publish = oneRequestAtATime((c) => dead.publishLifecycleCommand(c));
      const failed = await Promise.allSettled([publish(note(1, 'a')), publish(note(1, 'b'))]);
      expect(failed.map((f) => f.status)).toEqual(['rejected', 'rejected']);
      // the gate opened again: a later command is sent (and refused) rather than kept waiting
      await expect(publish(note(1, 'c'))).rejects.toThrow();
    } finally {
      await dead.close().catch(() => undefined);
    }
  }, 30_000);
});
