import type { GroupEvent } from '@shoal/contracts';
import { waitFor } from '@shoal/testing';
import { expect, it } from 'vitest';
import { regressionTestKit, rowsOf, uniqueUuid, type Stack } from './kit.js';
import { appliedByRegression, publishGroupEvents } from './support.js';

// `now` resolutions through the service: an occurrence within the grace period after the
// resolution does not regress, one after it does; SHOAL_REGRESSION_GRACE_SECONDS sets the period.

const { fresh, startRegression } = regressionTestKit();
const RESOLVED_AT = Date.parse('2025-01-01T01:00:00Z');

function resolvedNow(groupId: number, occurrenceSecondsAfter: number[]): GroupEvent[] {
  const base = { group_id: groupId, project_id: 1 };
  const at = (s: number) => new Date(RESOLVED_AT + s * 1000).toISOString();
  return [
    { ...base, event_id: uniqueUuid(), event_type: 'group_created', occurred_at: at(-3600) },
    {
      ...base,
      event_id: uniqueUuid(),
      event_type: 'status_changed',
      occurred_at: at(0),
      status: 'resolved',
      previous_status: 'unresolved',
      sequence: 1,
      resolution_id: 1,
      decided_by: 'lifecycle',
      resolution: { type: 'now', resolved_at: at(0) },
    },
    ...occurrenceSecondsAfter.map((s): GroupEvent => ({
      ...base,
      event_id: uniqueUuid(),
      event_type: 'occurrence_grouped',
      occurred_at: at(s),
      occurrence_id: `o-${groupId}-${s}`,
      status: 'resolved',
      event_timestamp: at(s),
    })),
  ];
}

async function regressedBy(stack: Stack, events: GroupEvent[]) {
  await publishGroupEvents(stack, events);
  await waitFor('all applied', async () => {
    for (const e of events) if (!(await appliedByRegression(stack.db, e.event_id))) return false;
    return true;
  });
  return rowsOf<{ group_id: number; occurrence_id: string; decided_by: string }>(
    stack.db,
    'SELECT group_id::int, occurrence_id, decided_by FROM regression.regressions ORDER BY group_id',
  );
}

it('resolved now: within the default 5 s grace no regression, after it one; a configured 120 s grace is honoured', async () => {
  const stack = await fresh();
  await startRegression(stack).ready;
  expect(await regressedBy(stack, resolvedNow(1, [3, 5, 60]))).toEqual([
    { group_id: 1, occurrence_id: 'o-1-60', decided_by: 'grace' },
  ]);

  const longer = await fresh();
  await startRegression(longer, { SHOAL_REGRESSION_GRACE_SECONDS: '120' }).ready;
  expect(await regressedBy(longer, resolvedNow(2, [60, 121]))).toEqual([
    { group_id: 2, occurrence_id: 'o-2-121', decided_by: 'grace' },
  ]);
});
