import { waitFor } from '@shoal/testing';
import type { StatusChange } from '@shoal/contracts';
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

  it('by first-seen time: an older release, a deleted one’s neighbours, no release and an event from before the resolution do not regress, a newer release does; in_commit waits for a release with the commit', async () => {
    const stack = await fresh();
    await startGrouping(stack).ready;
    await startRegression(stack).ready;
    const base = 1764000000; // occurrence i is detected at base + i
    const at = (i: number) => new Date((base + i) * 1000).toISOString();
    const recordFor = async (groupId: number) =>
      rowsOf<{ occurrence_id: string; decided_by: string; state: string }>(
        stack.db,
        'SELECT occurrence_id, decided_by, state FROM regression.regressions WHERE group_id = $1',
        [groupId],
      );
    const groupIdOf = async (fingerprint: string) =>
      (
        await rowsOf<{ id: number }>(
          stack.db,
          'SELECT g.id::int FROM grouping.groups g WHERE g.title = $1',
          [`Error in ${fingerprint}`],
        )
      )[0]?.id;

    // releases first seen in this order: nightly-a, nightly-b, nightly-c
    for (const [i, release] of ['nightly-a', 'nightly-b', 'nightly-c'].entries())
      await stack.producer.publishOccurrence(occurrence(i, 'dated', release));
    await stack.producer.publishOccurrence(occurrence(3, 'commit', 'web@1.0.0'));
    await waitFor('both groups', async () => (await groupIdOf('commit')) !== undefined);
    const dated = (await groupIdOf('dated'))!;
    const commit = (await groupIdOf('commit'))!;
    await stack.producer.publishStatusChange(
      resolve('dated', { type: 'in_release', release: 'nightly-b' }, { update_date: at(100) }),
    );
    await stack.producer.publishStatusChange(
      resolve('commit', { type: 'in_commit', commit: 'abc1234' }, { update_date: at(100) }),
    );
    await publishEntityChanges(stack.ns, [
      { entity_kind: 'release', entity_id: 'nightly-b', change: 'deleted', project_id: 1 },
    ]);
    await waitFor('both resolved in regression’s projection', async () =>
      (await projected(stack.db)).every((g) => g.status === 'resolved'),
    );

    const last = occurrence(204, 'dated', 'nightly-c');
    for (const o of [
      occurrence(200, 'dated', 'nightly-a'), // older than the (deleted) resolving release
      occurrence(201, 'dated', 'nightly-b'), // the resolving release itself
      occurrence(202, 'dated', null), // no release
      occurrence(50, 'dated', 'nightly-c'), // newer, but from before the resolution
      occurrence(203, 'commit', 'web@2.0.0'), // no release holds the commit yet
      last,
    ])
      await stack.producer.publishOccurrence(o);
    await waitFor('the dated group regressed', async () => (await recordFor(dated)).length === 1);
    expect(await recordFor(dated)).toMatchObject([{ occurrence_id: last.id, decided_by: 'date' }]);
    expect(await recordFor(commit)).toEqual([]);

    await publishEntityChanges(stack.ns, [
      {
        entity_kind: 'release',
        entity_id: 'web@1.5.0',
        change: 'created',
        project_id: 1,
        commits: ['abc1234'],
      },
    ]);
    await waitFor(
      'the release announced',
      async () =>
        (await rowsOf(stack.db, "SELECT 1 FROM regression.releases WHERE version = 'web@1.5.0'"))
          .length === 1,
    );
    const afterRelease = occurrence(205, 'commit', 'web@2.0.0');
    await stack.producer.publishOccurrence(afterRelease);
    await waitFor('the commit group regressed', async () => (await recordFor(commit)).length === 1);
    expect(await recordFor(commit)).toMatchObject([
      { occurrence_id: afterRelease.id, decided_by: 'semver' },
    ]);
  });

  it('ignored until escalating comes back when the last hour exceeds twice the rate before; ignored until a time, by the occurrence’s time', async () => {
    const stack = await fresh();
    await startGrouping(stack).ready;
    await startRegression(stack).ready;
    const at = (i: number) => new Date((1764000000 + i) * 1000).toISOString();
    const ignore = (fingerprint: string, how: NonNullable<StatusChange['shoal']>['ignore']) =>
      stack.producer.publishStatusChange({
        id: uniqueUuid(),
        project_id: 1,
        fingerprint: [fingerprint],
        new_status: 2,
        new_substatus: how?.until_escalating ? 1 : 4,
        shoal: { ignore: how },
      });
    const records = async () =>
      rowsOf<{ title: string; decided_by: string; state: string }>(
        stack.db,
        `SELECT g.title, r.decided_by, r.state FROM regression.regressions r
         JOIN grouping.groups g ON g.id = r.group_id ORDER BY r.id`,
      );

    await stack.producer.publishOccurrence(occurrence(0, 'escalate', null));
    await stack.producer.publishOccurrence(occurrence(0, 'until', null));
    await waitFor(
      'both groups',
      async () => (await rowsOf(stack.db, 'SELECT 1 FROM grouping.groups')).length === 2,
    );
    await ignore('escalate', { until_escalating: true });
    await ignore('until', { until: at(150) });
    await waitFor(
      'both ignored in regression’s projection',
      async () => (await projected(stack.db)).filter((g) => g.status === 'ignored').length === 2,
    );
    // one occurrence in over a year: far above the rate before; the other before its ignore ends
    await stack.producer.publishOccurrence(occurrence(100, 'escalate', null));
    await stack.producer.publishOccurrence(occurrence(100, 'until', null));
    await waitFor('the escalation confirmed', async () =>
      (await records()).some((r) => r.state === 'confirmed'),
    );
    expect(await records()).toEqual([
      { title: 'Error in escalate', decided_by: 'escalating', state: 'confirmed' },
    ]);
    await stack.producer.publishOccurrence(occurrence(200, 'until', null));
    await waitFor('the ignore ended', async () => (await records()).length === 2);
    expect((await records())[1]).toMatchObject({
      title: 'Error in until',
      decided_by: 'ignore_until',
    });
  });
});
