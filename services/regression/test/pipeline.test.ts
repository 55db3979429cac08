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

const { fresh, startGrouping, startRegression } = regressionTestKit();

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
});
