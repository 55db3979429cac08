import type { GroupEvent } from '@shoal/contracts';
import { waitFor } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import {
  groupEventsOn,
  groupingGroup,
  occurrence,
  projected,
  regressionRecords,
  regressionTestKit,
  resolve,
} from './kit.js';
import { appliedByRegression, publishGroupEvent } from './support.js';

const { fresh, otherDatabase, startGrouping, startRegression } = regressionTestKit();

const byRegression = (events: GroupEvent[]) =>
  events.filter((e) => e.event_type === 'status_changed' && e.decided_by === 'regression');

describe('regression through grouping, as deployed', () => {
  it('an occurrence from a newer release reopens a group resolved in a release exactly once (substatus regressed, confirmed); one from that release does not; a replayed older status_changed is ignored', async () => {
    const stack = await fresh();
    await startGrouping(stack).ready;
    await startRegression(stack).ready;
    await stack.producer.publishOccurrence(occurrence(0, 'checkout', 'web@1.2.0'));
    await waitFor('the group', async () => (await groupingGroup(stack.db)) !== undefined);
    await stack.producer.publishStatusChange(
      resolve('checkout', { type: 'in_release', release: 'web@1.2.0' }),
    );
    await waitFor('regression sees it resolved', async () =>
      (await projected(stack.db)).some((g) => g.status === 'resolved'),
    );

    await stack.producer.publishOccurrence(occurrence(1, 'checkout', 'web@1.2.0'));
    await stack.producer.publishOccurrence(occurrence(2, 'checkout', 'web@1.10.0'));
    await stack.producer.publishOccurrence(occurrence(3, 'checkout', 'web@1.10.0'));
    await waitFor(
      'the regression confirmed',
      async () => (await regressionRecords(stack.db))[0]?.state === 'confirmed',
    );
    expect(await groupingGroup(stack.db)).toMatchObject({ status: 'unresolved', substatus: 6 });
    expect(await regressionRecords(stack.db)).toMatchObject([
      { state: 'confirmed', kind: 'regressed', decided_by: 'semver', flapping: false },
    ]);
    const events = await groupEventsOn(stack.ns);
    expect(byRegression(events)).toHaveLength(1);
    expect(await projected(stack.db)).toMatchObject([{ status: 'unresolved', sequence: 2 }]);

    // a dead letter of the first status_changed replayed onto the topic: older than the last applied
    const first = events.find((e) => e.event_type === 'status_changed' && e.sequence === 1)!;
    const replayed = { ...first, event_id: '00000000-0000-4000-9000-ffffffffffff' };
    await publishGroupEvent(stack, replayed);
    await waitFor('the replay applied (as a no-op)', () =>
      appliedByRegression(stack.db, replayed.event_id),
    );
    expect(await projected(stack.db)).toMatchObject([{ status: 'unresolved', sequence: 2 }]);
  });

  it('two regression workers and a user re-resolving, all at once: grouping applies exactly one of the three; each worker’s record is confirmed or superseded as grouping answered', async () => {
    const stack = await fresh();
    const second = await otherDatabase();
    await startGrouping(stack).ready;
    await Promise.all([startRegression(stack).ready, startRegression(stack, {}, second).ready]);
    await stack.producer.publishOccurrence(occurrence(0, 'race', 'web@1.0.0'));
    await waitFor('the group', async () => (await groupingGroup(stack.db)) !== undefined);
    const { id: groupId } = (await groupingGroup(stack.db))!;
    await stack.producer.publishStatusChange(
      resolve('race', { type: 'in_release', release: 'web@1.0.0' }),
    );
    const bothResolved = async () =>
      (await projected(stack.db))[0]?.status === 'resolved' &&
      (await projected(second))[0]?.status === 'resolved';
    await waitFor('both workers see it resolved', bothResolved);

    const reResolve = resolve(
      'race',
      { type: 'in_release', release: 'web@2.0.0' },
      {
        update_date: null,
        shoal: {
          group_id: groupId,
          decided_by: 'lifecycle',
          expect: { status: 1, resolution_id: 1 },
          resolution: { type: 'in_release', release: 'web@2.0.0' },
        },
      },
    );
    // the occurrence grouped on the group resolved by resolution 1; the workers' proposals and the
    // user's re-resolve (expecting resolution 1 too) then race to grouping
    await stack.producer.publishOccurrence(occurrence(1, 'race', 'web@1.5.0'));
    await waitFor('the occurrence grouped', async () =>
      (await groupEventsOn(stack.ns)).some((e) => e.event_type === 'occurrence_grouped'),
    );
    await stack.producer.publishStatusChange(reResolve);
    const settled = async (db: typeof second) =>
      (await regressionRecords(db)).length === 1 &&
      (await regressionRecords(db))[0]!.state !== 'proposed';
    await waitFor(
      'both proposals answered',
      async () => (await settled(stack.db)) && (await settled(second)),
    );
    const answersOf = async () =>
      (await groupEventsOn(stack.ns)).filter(
        (e) =>
          (e.event_type === 'status_changed' || e.event_type === 'status_change_noop') &&
          (e.sequence ?? 0) >= 1 &&
          e.decided_by !== 'upstream',
      );
    // the re-resolve's answer may come after both workers' (one key, one partition, in order)
    await waitFor('grouping answered all three', async () => (await answersOf()).length >= 3);
    const answers = await answersOf();
    expect(answers).toHaveLength(3);
    const applied = answers.filter((e) => e.event_type === 'status_changed');
    expect(applied).toHaveLength(1);
    expect(applied[0]!.sequence).toBe(2);
    const records = [...(await regressionRecords(stack.db)), ...(await regressionRecords(second))];
    for (const record of records)
      expect(record.state).toBe(
        record.change_id === applied[0]!.change_id ? 'confirmed' : 'superseded',
      );
    const group = (await groupingGroup(stack.db))!;
    if (applied[0]!.decided_by === 'regression')
      expect(group).toMatchObject({ status: 'unresolved', substatus: 6, resolution_id: 1 });
    else expect(group).toMatchObject({ status: 'resolved', resolution_id: 2 });
  });

  it('killed (-9) before its batch commits, and again between publishing its status change and marking it sent: exactly one confirmed regression', async () => {
    const stack = await fresh({ groupEvents: 1 });
    await startGrouping(stack).ready;
    await stack.producer.publishOccurrence(occurrence(0, 'killed', 'web@1.0.0'));
    await waitFor('the group', async () => (await groupingGroup(stack.db)) !== undefined);
    await stack.producer.publishStatusChange(
      resolve('killed', { type: 'in_release', release: 'web@1.0.0' }),
    );
    await waitFor('resolved', async () => (await groupingGroup(stack.db))?.status === 'resolved');
    for (let i = 1; i <= 5; i++)
      await stack.producer.publishOccurrence(occurrence(i, 'killed', 'web@1.1.0'));
    await waitFor(
      'the occurrences grouped',
      async () =>
        (await groupEventsOn(stack.ns)).filter((e) => e.event_type === 'occurrence_grouped')
          .length === 5,
    );

    // the whole log is one batch: the first kill lands before its commit
    const first = startRegression(stack, { SHOAL_CRASH_AT: 'consumer:before-commit:1' });
    expect(await first.exited).toBeNull();
    expect(first.child.signalCode).toBe('SIGKILL');
    expect(await regressionRecords(stack.db)).toEqual([]);
    const second = startRegression(stack, { SHOAL_CRASH_AT: 'relay:published:1' });
    await second.exited;
    expect(second.child.signalCode).toBe('SIGKILL');
    expect(await regressionRecords(stack.db)).toMatchObject([{ state: 'proposed' }]);
    await startRegression(stack).ready;
    await waitFor(
      'the regression confirmed',
      async () => (await regressionRecords(stack.db))[0]?.state === 'confirmed',
    );
    expect(await regressionRecords(stack.db)).toHaveLength(1);
    const events = await groupEventsOn(stack.ns);
    expect(byRegression(events)).toHaveLength(1);
    expect(events.filter((e) => e.event_type === 'status_change_noop')).toEqual([]);
    expect(await groupingGroup(stack.db)).toMatchObject({ status: 'unresolved', substatus: 6 });
  });
});
