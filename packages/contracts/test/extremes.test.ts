import { connections, extremeVariants, isolatedTopics, type IsolatedTopics } from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Codec, ContractError, createRegistry, problemsOf, topicKeys } from '../src/index.js';
import { example } from './examples.js';

/** A valid message of each topic with every optional object present, so each field can be set. */
const bases = {
  occurrences: {
    ...example('occurrence.shoal-extended.json'),
    evidence_display: [{ name: 'n', value: 'v', important: true }],
  },
  statusChanges: {
    ...example('status-change.sentry-resolve.json'),
    shoal: {
      expect: { status: 1, resolution_id: 1 },
      resolution: { type: 'in_release', release: 'web@1.2.0' },
    },
  },
  groupEvents: {
    ...example('group-event.group-created.json'),
    resolution: { type: 'now', resolved_at: '2026-11-30T10:00:00Z' },
    expect: { status: 'resolved' },
  },
  lifecycleCommands: {
    ...example('lifecycle-command.claim.json'),
    resolution: { type: 'in_commit' },
    run_event: { run_id: 'run-1', phase: 'started' },
    group: {},
    group_status: { status: 'resolved', sequence: 1 },
    orphans: [{ kind: 'issue', id: '1' }],
  },
  lifecycle: {
    ...example('lifecycle-event.resolved.json'),
    run_event: { run_id: 'run-1', phase: 'started' },
  },
  entityChanges: example('entity-change.project-deleted.json'),
  incidents: {
    ...example('incident-event.linked.json'),
    merged_incident_id: 16,
    member_group_ids: [1001, 1002],
    actor: 'ops@shoal',
    note: 'one incident',
  },
  dedupCommands: { ...example('dedup-command.split.json'), from_incident_id: 16 },
  regressionCommands: example('regression-command.cleanup-orphans.json'),
  groupingCommands: example('grouping-command.cleanup-orphans.json'),
};

let ns: IsolatedTopics;
let codec: Codec;
beforeAll(async () => {
  ns = await isolatedTopics();
  codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
});
afterAll(() => ns.drop());

it.each(topicKeys)(
  '%s: every extreme value of every field is refused naming the field, or passes the codec unchanged',
  async (key) => {
    const frame = (await codec.encode(key, bases[key] as never)).subarray(0, 5);
    const wrong: string[] = [];
    const variants = extremeVariants(key, () => structuredClone(bases[key]));
    for (const v of variants) {
      const what = `${v.pointer} = ${v.label}`;
      const problems = problemsOf(key, v.message);
      if (v.unsafeInteger && !problems.length) wrong.push(`${what}: accepted, would be rounded`);
      if (problems.length) {
        if (problems.some((p) => p.path !== v.pointer))
          wrong.push(`${what}: refused at ${problems.map((p) => p.path).join(', ')}`);
        // as a consumer receives it: the codec's decode refuses it the same way
        const refused = await codec
          .decode(key, Buffer.concat([frame, Buffer.from(JSON.stringify(v.message))]))
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        if (!(refused instanceof ContractError) || refused.reason !== 'schema_invalid')
          wrong.push(`${what}: decode did not refuse it as schema_invalid`);
        else if ([...new Set(refused.paths)].join() !== v.pointer)
          wrong.push(`${what}: decode named ${refused.paths.join(', ')}`);
        continue;
      }
      const decoded = await codec.decode(key, await codec.encode(key, v.message as never));
      try {
        expect(decoded).toEqual(v.message);
      } catch {
        wrong.push(`${what}: changed by the codec`);
      }
    }
    expect(variants.length).toBeGreaterThan(50);
    expect(wrong).toEqual([]);
  },
  120_000,
);
