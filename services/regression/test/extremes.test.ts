import type { GroupEvent } from '@shoal/contracts';
import { incompressible, waitFor } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { regressionRecords, regressionTestKit, rowsOf, uniqueUuid } from './kit.js';
import { appliedByRegression, publishGroupEvent } from './support.js';

const { fresh, startRegression } = regressionTestKit();

/** Text the schemas accept that PostgreSQL cannot hold as it is (NUL) or that JSON escapes (lone surrogates). */
const awkward = ['a\u0000b', '\ud800', 'x\udc00', incompressible()];

describe('regression stores what the schemas accept', () => {
  it('fingerprints, releases and commits with NUL, lone surrogates or 100 KB are applied and decided, never failed', async () => {
    const stack = await fresh();
    await startRegression(stack).ready;
    const events: GroupEvent[] = awkward.flatMap((text, i): GroupEvent[] => {
      const group = { group_id: i + 1, project_id: 1 };
      return [
        {
          ...group,
          event_id: uniqueUuid(),
          event_type: 'group_created',
          occurred_at: '2025-01-01T00:00:00Z',
          primary_fingerprint: text,
        },
        {
          ...group,
          event_id: uniqueUuid(),
          event_type: 'status_changed',
          occurred_at: '2025-01-01T00:00:01Z',
          status: 'resolved',
          previous_status: 'unresolved',
          sequence: 1,
          resolution_id: 1,
          resolution: {
            type: 'now',
            release: text,
            current_release_version: text,
            commit: text,
            resolved_at: '2025-01-01T00:00:01Z',
          },
        },
        {
          ...group,
          event_id: uniqueUuid(),
          event_type: 'occurrence_grouped',
          occurred_at: '2025-01-02T00:00:00Z',
          occurrence_id: text,
          status: 'resolved',
          release: text,
          detection_time: Date.parse('2025-01-02T00:00:00Z') / 1000,
        },
      ];
    });
    for (const event of events) await publishGroupEvent(stack, event);
    await waitFor('every event applied', async () => {
      for (const e of events) if (!(await appliedByRegression(stack.db, e.event_id))) return false;
      return true;
    });
    expect(await rowsOf(stack.db, 'SELECT reason FROM regression.message_failures')).toEqual([]);
    expect((await regressionRecords(stack.db)).map((r) => r.decided_by)).toEqual(
      awkward.map(() => 'grace'),
    );
  });
});
