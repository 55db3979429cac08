import { expect, it } from 'vitest';
import { runChaos } from './chaos.js';

it('SIGKILLed at random instants and at named points, the counter ends exactly where an uninterrupted run does', async () => {
  const report = await runChaos({ messages: 20_000, kills: 10 });
  expect(
    report.kills.external + Object.values(report.kills.selfKilled).reduce((a, b) => a + b, 0),
  ).toBe(10);
  expect(report.kills.selfKilled['relay:published']).toBeGreaterThanOrEqual(1);
  expect(report.applied).toBe(20_000 - report.deadLettered);
  expect(report.deadLettered).toBe(20);
  // held for an entity announced partway through, in both runs, then applied
  expect(report.late).toBeGreaterThan(0);
  expect(report.heldWhenAnnounced.killed).toBeGreaterThan(0);
  expect(report.heldWhenAnnounced.calm).toBe(report.late);
  expect(report.readModelEqual).toBe(true);
  expect(report.eventIdsEqual).toBe(true);
  expect(report.distinctEvents).toBe(report.applied);
  expect(report.failuresEqual).toBe(true);
}, 600_000);
