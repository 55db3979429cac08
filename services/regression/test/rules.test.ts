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
  rowsOf,
  uniqueUuid,
} from './kit.js';
// the entity changes an upstream sends, as grouping's tests send them
import { publishEntityChanges } from '../../grouping/test/kit.js';

const { fresh, startGrouping, startRegression } = regressionTestKit();

describe('the rules through the service, against grouping', () => {
  it('in_next_release takes the current release from the projection; a second regression within the window is flagged flapping; an ignore until 2 occurrences ends as escalating; deleting the group detaches its records', async () => {
    const stack = await fresh();
    await startGrouping(stack).ready;
    await startRegression(stack, { SHOAL_REGRESSION_FLAPPING_LIMIT: '1' }).ready;
    // occurrences happen after the resolutions, which are stamped when grouping records them
    const later = Math.floor(Date.now() / 1000) + 600;
    const confirmed = (n: number) => async () =>
      (await regressionRecords(stack.db)).filter((r) => r.state === 'confirmed').length === n;

    await stack.producer.publishOccurrence(occurrence(0, 'next', 'web@1.0.0'));
    await waitFor('the group', async () => (await groupingGroup(stack.db)) !== undefined);
    await stack.producer.publishStatusChange(
      resolve('next', { type: 'in_next_release' }, { update_date: null }),
    );
    await waitFor('resolved in the next release', async () =>
      (await projected(stack.db)).some((g) => g.status === 'resolved'),
    );
    expect(
      await rowsOf(
        stack.db,
        "SELECT resolution->>'current_release_version' AS v FROM regression.groups",
      ),
    ).toEqual([{ v: 'web@1.0.0' }]);
    await stack.producer.publishOccurrence(occurrence(1, 'next', 'web@1.0.0', later));
    await stack.producer.publishOccurrence(occurrence(2, 'next', 'web@1.1.0', later));
    await waitFor('the first regression confirmed', confirmed(1));

    await stack.producer.publishStatusChange(
      resolve('next', { type: 'in_release', release: 'web@1.1.0' }, { update_date: null }),
    );
    await waitFor(
      'resolved again',
      async () => (await groupingGroup(stack.db))?.status === 'resolved',
    );
    await stack.producer.publishOccurrence(occurrence(3, 'next', 'web@1.2.0', later));
    await waitFor('the second regression confirmed', confirmed(2));
    expect((await regressionRecords(stack.db)).map((r) => r.flapping)).toEqual([false, true]);
    expect(await rowsOf(stack.db, 'SELECT flapping FROM grouping.groups')).toEqual([
      { flapping: true },
    ]);

    await stack.producer.publishStatusChange({
      id: uniqueUuid(),
      project_id: 1,
      fingerprint: ['next'],
      new_status: 2,
      new_substatus: 4,
      shoal: { decided_by: 'lifecycle', ignore: { until_occurrences: 2 } },
    });
    await waitFor('ignored', async () => (await groupingGroup(stack.db))?.status === 'ignored');
    await stack.producer.publishOccurrence(occurrence(4, 'next', null, later));
    await stack.producer.publishOccurrence(occurrence(5, 'next', null, later));
    await waitFor('the escalation confirmed', confirmed(3));
    expect(await groupingGroup(stack.db)).toMatchObject({ status: 'unresolved', substatus: 2 });
    expect((await regressionRecords(stack.db))[2]).toMatchObject({
      kind: 'escalating',
      decided_by: 'ignore_count',
    });
    const regressedBy = (await groupEventsOn(stack.ns)).filter(
      (e) => e.event_type === 'status_changed' && e.decided_by === 'regression',
    );
    expect(regressedBy.map((e) => e.substatus)).toEqual([6, 6, 2]);

    const { id } = (await groupingGroup(stack.db))!;
    await publishEntityChanges(stack.ns, [
      { entity_kind: 'group', entity_id: String(id), change: 'deleted', project_id: 1 },
    ]);
    await waitFor(
      'the records detached',
      async () =>
        (await rowsOf(stack.db, 'SELECT 1 FROM regression.regressions WHERE detached_at IS NULL'))
          .length === 0,
    );
  });
});
