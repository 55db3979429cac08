import { readAll, waitFor } from '@shoal/testing';
import { expect, it } from 'vitest';
import {
  dedupTestKit,
  groupCreated,
  incidentEvents,
  incidentOf,
  members,
  publishGroupEvents,
} from '../../../services/dedup/test/support.js';
import { shoalRunners } from './support.js';

// `shoal dedup merge|split` as operators run them (the workspace bin), against the dedup service
// on the real stack: the command goes through shoal.dedup-commands.v1, dedup applies it.

const { fresh, start } = dedupTestKit();
let namespace = '';
const { shoal, shoalOnTerminal } = shoalRunners(() => ({ SHOAL_TOPIC_NAMESPACE: namespace }));

const jsonOf = (stdout: string) => JSON.parse(stdout.trim()) as Record<string, unknown>;

it('merge and split publish commands dedup applies; one it refuses is recorded', async () => {
  const { ns, db } = await fresh();
  namespace = ns.namespace;
  await start(ns, db);
  await publishGroupEvents(ns, [
    groupCreated(1, 10, { message: 'Payment declined for order 1' }),
    groupCreated(2, 20, { message: 'Payment declined for order 22' }),
    groupCreated(3, 5, { message: 'Card expired' }),
  ]);
  await waitFor('three members linked', async () => (await incidentOf(db)).size === 3);
  const before = await incidentOf(db);
  const [declined, expired] = [before.get(1)!, before.get(3)!];
  expect(before.get(2)).toBe(declined);

  const dry = shoal([
    'dedup',
    'merge',
    '--into',
    String(declined),
    '--from',
    String(expired),
    '--dry-run',
  ]);
  expect(dry.status).toBe(0);
  expect(jsonOf(dry.stdout)).toMatchObject({
    command: 'merge',
    incident_id: declined,
    from_incident_id: expired,
  });

  const merge = shoal([
    'dedup',
    'merge',
    '--into',
    String(declined),
    '--from',
    String(expired),
    '--reason',
    'one outage',
    '--actor',
    'ops@test',
    '--yes',
  ]);
  expect(merge.status).toBe(0);
  expect(merge.stderr).toContain(`published on ${ns.topics.dedupCommands}`);
  await waitFor('the merge', async () => (await incidentOf(db)).get(3) === declined);

  const split = shoal(['dedup', 'split', '--incident', String(declined), '--group', '2', '--yes']);
  expect(split.status).toBe(0);
  await waitFor('the split', async () =>
    (await members(db)).some((m) => m.group_id === 2 && m.split),
  );
  await waitFor('the events', async () =>
    (await incidentEvents(ns)).some((e) => e.reason === 'split'),
  );
  expect((await incidentEvents(ns)).find((e) => e.event_type === 'incident_merged')).toMatchObject({
    incident_id: declined,
    merged_incident_id: expired,
    actor: 'ops@test',
    note: 'one outage',
  });

  // the incident merged away cannot be split from: refused, recorded, nothing changed
  const refused = shoal(['dedup', 'split', '--incident', String(expired), '--group', '3', '--yes']);
  expect(refused.status).toBe(0);
  await waitFor(
    'the refusal',
    async () =>
      (await db.pool.query("SELECT 1 FROM message_rejections WHERE reason = 'not_splittable'"))
        .rowCount === 1,
  );
  expect((await incidentOf(db)).get(3)).toBe(declined);
});

it('on a terminal asks first, and a no publishes nothing (exit 1)', async () => {
  const { ns } = await fresh();
  namespace = ns.namespace;
  const answered = shoalOnTerminal(['dedup', 'merge', '--into', '1', '--from', '2'], 'n');
  expect(answered.status).toBe(1);
  expect(answered.output).toContain('merge incident 2 into incident 1?');
  expect(answered.output).toContain('nothing published');
  expect(await readAll(ns.topics.dedupCommands)).toEqual([]);
});

it('exits 4 when Kafka does not answer', async () => {
  const { ns } = await fresh();
  namespace = ns.namespace;
  const down = shoal(['dedup', 'split', '--incident', '1', '--group', '2', '--yes'], {
    KAFKA_BROKERS: '127.0.0.1:1',
  });
  expect(down.status).toBe(4);
});

it('asks for --yes without a terminal, and refuses a bad id as bad usage', () => {
  const noYes = shoal(['dedup', 'split', '--incident', '1', '--group', '2']);
  expect(noYes.status).toBe(2);
  expect(noYes.stderr).toContain('--yes is required');
  const badId = shoal(['dedup', 'merge', '--into', '0', '--from', '2', '--yes']);
  expect(badId.status).toBe(2);
  expect(badId.stderr).toContain("option '--into <incident>' argument '0' is invalid");
});
