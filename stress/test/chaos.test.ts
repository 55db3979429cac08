import { expect, it } from 'vitest';
import { runChaos } from '../../packages/kafka-runtime/test/chaos.js';
import { groupingChaos } from '../chaos/grouping.js';
import { lifecycleChaos } from '../chaos/lifecycle.js';

// `npm run chaos -- --service grouping` at a size the suite affords (the full run: 50 kills)
it('grouping SIGKILLed 6 times at random instants and at the runtime hook points, with messages held for an entity announced partway, ends exactly where an uninterrupted run does, group_activity deltas summing to each group’s times seen', async () => {
  const report = await runChaos({ messages: 3000, kills: 6 }, groupingChaos);
  expect(
    report.kills.external + Object.values(report.kills.selfKilled).reduce((a, b) => a + b, 0),
  ).toBe(6);
  expect(report.deadLettered).toBe(3);
  expect(report.applied).toBe(3000 - 3);
  // held for an entity announced partway through, in both runs, then applied
  expect(report.late).toBeGreaterThan(0);
  expect(report.heldWhenAnnounced.killed).toBeGreaterThan(0);
  expect(report.heldWhenAnnounced.calm).toBe(report.late);
  expect(report.readModelEqual).toBe(true);
  expect(report.eventIdsEqual).toBe(true);
  expect(report.failuresEqual).toBe(true);
  // group_activity, whose ids depend on when the flush ran: per group, deltas summing to times seen
  expect(report.scheduledProblems).toEqual([]);
}, 300_000);

// `npm run chaos -- --service lifecycle` at a size the suite affords (the same 5 kills, fewer commands)
it('lifecycle SIGKILLed 5 times under agent and system commands: an agent reading shoal.lifecycle.v1 from the start sees every issue’s versions 1…N in order once by event id; every command applied once; each API command in flight at a kill answered at /v1/commands/{id}', async () => {
  const report = await lifecycleChaos({ commands: 200, kills: 5 });
  expect(report.problems).toEqual([]);
  expect(report.inFlightAtKills).toBeGreaterThan(0);
  expect(report.commands.api + report.commands.topic).toBeGreaterThanOrEqual(200);
  expect(report.events.distinct).toBeGreaterThan(report.issues);
}, 180_000);
