import { randomUUID } from 'node:crypto';
import {
  Codec,
  createRegistry,
  type EntityChange,
  type GroupEvent,
  type IncidentEvent,
  type LifecycleCommand,
} from '@shoal/contracts';
import { runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import { failurePolicyFromEnv, HEADER, runConsumer } from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { commandIdOf, INTAKE_ACTOR } from '../src/intake/commands.js';
import { intakeHandler } from '../src/intake/handler.js';
import { intakeLookups, intakeMessageId } from '../src/intake/lookups.js';
import { intakeTopics, lifecycleMigrationsDir } from '../src/service.js';

// The intake consumer (src/intake/) against the real stack: group events, entity changes and
// incidents in, system commands out through the outbox (what the relay then publishes to
// shoal.lifecycle-commands.v1), each mapping and each failure path.

const ISSUED_AT = '2026-11-30T09:00:00.000Z';
const T0 = Date.parse('2026-11-30T08:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

interface Run {
  ns: IsolatedTopics;
  db: IsolatedDatabase;
  send(topic: keyof typeof keyOf, values: object[], raw?: Buffer): Promise<void>;
  /** Every command intake wrote to the outbox so far, in order. */
  commands(): Promise<(LifecycleCommand & { key: string })[]>;
  /** Waits until intake stored an offset past every message sent. */
  settled(): Promise<void>;
  failures(): Promise<{ reason: string; entity: string | null; action: string }[]>;
}

const keyOf = {
  groupEvents: (v: GroupEvent) => String(v.group_id),
  incidents: (v: IncidentEvent) => String(v.incident_id),
  entityChanges: (v: EntityChange) => `${v.entity_kind}:${v.entity_id}`,
} as const;

async function start(env: Record<string, string> = {}): Promise<Run> {
  const ns = await isolatedTopics({
    partitions: { groupEvents: 1, incidents: 1, entityChanges: 1 },
  });
  const db = await isolatedDatabase({
    dirs: [runtimeMigrationsDir, lifecycleMigrationsDir],
    schema: serviceSchema('lifecycle'),
  });
  const group = uniqueName('intake-');
  const consumer = await runConsumer({
    group,
    topics: [...intakeTopics],
    topicNames: ns.topics,
    handle: intakeHandler({
      lifecycleCommands: ns.topics.lifecycleCommands,
      now: () => Date.parse(ISSUED_AT),
    }),
    lookups: intakeLookups,
    messageId: intakeMessageId,
    pool: db.pool,
    kafka: new Kafka({
      brokers: connections().KAFKA_BROKERS,
      clientId: uniqueName('intake-'),
      logLevel: logLevel.NOTHING,
    }),
    codec: new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics),
    failure: failurePolicyFromEnv(env),
    logger: createLogger('intake-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 },
  });
  cleanups.push(
    () => ns.drop(),
    () => db.drop(),
    () => consumer.stop(),
  );
  const sent: Record<string, number> = {};
  return {
    ns,
    db,
    async send(topic, values, raw) {
      const producer = kafka().producer({ idempotent: true });
      await producer.connect();
      try {
        await producer.send({
          topic: ns.topics[topic],
          acks: -1,
          messages: raw
            ? [{ key: 'bad', value: raw }]
            : values.map((v) => ({
                key: (keyOf[topic] as (v: object) => string)(v),
                value: JSON.stringify(v),
                headers: { [HEADER.messageId]: (v as { event_id: string }).event_id },
              })),
        });
      } finally {
        await producer.disconnect();
      }
      sent[ns.topics[topic]] = (sent[ns.topics[topic]] ?? 0) + (raw ? 1 : values.length);
    },
    async commands() {
      const { rows } = await db.pool.query<{ key: string; payload: LifecycleCommand }>(
        `SELECT message_key AS key, payload FROM lifecycle.outbox_events
         WHERE topic = $1 ORDER BY seq, ordinal`,
        [ns.topics.lifecycleCommands],
      );
      return rows.map((r) => ({ ...r.payload, key: r.key }));
    },
    settled: () =>
      waitFor(
        'intake to apply every message sent',
        async () => {
          const { rows } = await db.pool.query<{ topic: string; next_offset: string }>(
            'SELECT topic, next_offset FROM lifecycle.consumer_offsets WHERE consumer_group = $1',
            [group],
          );
          const stored = new Map(rows.map((r) => [r.topic, Number(r.next_offset)]));
          return Object.entries(sent).every(([topic, n]) => stored.get(topic) === n);
        },
        60_000,
      ),
    async failures() {
      const { rows } = await db.pool.query<{
        reason: string;
        entity: string | null;
        action: string;
      }>('SELECT reason, entity, action FROM lifecycle.message_failures ORDER BY id');
      return rows;
    },
  };
}

const groupEvent = (
  type: GroupEvent['event_type'],
  groupId: number,
  fields: Partial<GroupEvent> = {},
): GroupEvent => ({
  event_id: randomUUID(),
  event_type: type,
  occurred_at: at(groupId),
  group_id: groupId,
  project_id: 1,
  ...fields,
});

const created = (groupId: number, project = 1) =>
  groupEvent('group_created', groupId, {
    project_id: project,
    short_id: `P-${groupId}`,
    primary_hash: `hash-${groupId}`,
    primary_fingerprint: `fp-${groupId}`,
    level: 'fatal',
    title: `TypeError ${groupId}`,
    culprit: 'app.js in run',
    release: '1.0.0',
    environment: 'production',
    times_seen: 1,
    first_seen: at(1),
    last_seen: at(1),
    trace_id: 'a'.repeat(32),
    status: 'unresolved',
  });

const entity = (
  kind: EntityChange['entity_kind'],
  id: string,
  change: EntityChange['change'],
  fields: Partial<EntityChange> = {},
): EntityChange => ({
  event_id: randomUUID(),
  entity_kind: kind,
  entity_id: id,
  change,
  occurred_at: at(500),
  ...fields,
});

const incident = (
  type: IncidentEvent['event_type'],
  incidentId: number,
  canonical: number | null,
  fields: Partial<IncidentEvent> = {},
): IncidentEvent => ({
  event_id: randomUUID(),
  event_type: type,
  occurred_at: at(700),
  incident_id: incidentId,
  project_id: 1,
  canonical_group_id: canonical,
  reason: 'dedup_key',
  ...fields,
});

/** The fields every system command carries, for `event` and `issue`. */
const system = (
  event: { event_id: string; occurred_at: string },
  issue: number,
  command: LifecycleCommand['command'],
) => ({
  command_id: commandIdOf(event.event_id, issue, command),
  command,
  origin: 'system',
  issue_id: issue,
  actor: INTAKE_ACTOR,
  issued_at: ISSUED_AT,
  occurred_at: event.occurred_at,
  key: String(issue),
});

describe('intake: group events', () => {
  it("group_created → open, group_activity → observe, status_changed → sync_status, a noop of lifecycle's own change → sync_status with noop; other events (another's noop) command nothing; a re-delivery commands nothing more", async () => {
    const run = await start();
    const open = created(101);
    const activity = groupEvent('group_activity', 101, {
      times_seen: 7,
      times_seen_delta: 6,
      first_seen: at(1),
      last_seen: at(90),
      level: 'error',
      title: 'TypeError 101 (again)',
      release: '1.0.1',
      trace_id: 'b'.repeat(32),
    });
    const resolved = groupEvent('status_changed', 101, {
      status: 'resolved',
      previous_status: 'unresolved',
      substatus: null,
      sequence: 3,
      resolution_id: 2,
      decided_by: 'upstream',
      change_id: 'change-1',
      resolution: {
        type: 'in_commit',
        commit: 'abcdef1234567',
        release: '',
        current_release_version: '1.0.1',
        resolved_at: at(95),
      },
    });
    const refused = groupEvent('status_change_noop', 101, {
      status: 'resolved',
      sequence: 3,
      resolution_id: 2,
      decided_by: 'lifecycle',
      change_id: 'change-2',
      expect: { status: 'unresolved' },
    });
    const passedBy = [
      groupEvent('occurrence_grouped', 101, { occurrence_id: 'o-1' }),
      groupEvent('release_seen', 101, { release: '1.0.1' }),
      groupEvent('status_change_noop', 101, { sequence: 3 }),
    ];
    await run.send('groupEvents', [open, activity, resolved, refused, ...passedBy]);
    await run.settled();
    expect(await run.commands()).toEqual([
      {
        ...system(open, 101, 'open'),
        project_id: 1,
        group: {
          short_id: 'P-101',
          title: 'TypeError 101',
          culprit: 'app.js in run',
          level: 'fatal',
          primary_fingerprint: 'fp-101',
          release: '1.0.0',
          environment: 'production',
          first_seen: at(1),
          last_seen: at(1),
          times_seen: 1,
          trace_id: 'a'.repeat(32),
        },
      },
      {
        ...system(activity, 101, 'observe'),
        group: {
          title: 'TypeError 101 (again)',
          level: 'error',
          release: '1.0.1',
          first_seen: at(1),
          last_seen: at(90),
          times_seen: 7,
          times_seen_delta: 6,
          trace_id: 'b'.repeat(32),
        },
      },
      {
        ...system(resolved, 101, 'sync_status'),
        group_status: {
          status: 'resolved',
          previous_status: 'unresolved',
          substatus: null,
          sequence: 3,
          resolution_id: 2,
          decided_by: 'upstream',
          change_id: 'change-1',
        },
        resolution: {
          type: 'in_commit',
          release: null,
          current_release: '1.0.1',
          commit_shas: ['abcdef1234567'],
          resolution_id: 2,
          resolved_at: at(95),
        },
      },
      {
        ...system(refused, 101, 'sync_status'),
        group_status: {
          status: 'resolved',
          sequence: 3,
          resolution_id: 2,
          decided_by: 'lifecycle',
          change_id: 'change-2',
          noop: true,
        },
      },
    ]);
    // grouping's relay re-sends an event (same id): the ledger applies it once
    await run.send('groupEvents', [open, activity]);
    await run.settled();
    expect(await run.commands()).toHaveLength(4);
  }, 90_000);

  it('dead-letters what it cannot address, and commands nothing for it: undecodable bytes, a status_changed or a noop of lifecycle without sequence', async () => {
    const run = await start();
    await run.send('groupEvents', [], Buffer.from([0, 0, 0, 0, 1, 0xff]));
    await run.send('groupEvents', [
      groupEvent('status_changed', 102, { status: 'resolved', previous_status: 'unresolved' }),
      groupEvent('status_change_noop', 103, { status: 'resolved', decided_by: 'lifecycle' }),
    ]);
    await run.settled();
    expect(await run.failures()).toEqual([
      { reason: 'decode_error', entity: null, action: 'dlq' },
      { reason: 'schema_invalid', entity: null, action: 'dlq' },
      { reason: 'schema_invalid', entity: null, action: 'dlq' },
    ]);
    expect(await run.commands()).toEqual([]);
  }, 90_000);
});

describe('intake: entity changes', () => {
  it('a deleted group → delete (once); a later group event for it is stale_reference(group), dead-lettered by default', async () => {
    const run = await start();
    const open = created(201);
    await run.send('groupEvents', [open]);
    await run.settled();
    const deleted = entity('group', '201', 'deleted', { project_id: 1 });
    const again = entity('group', '201', 'discarded', { project_id: 1 });
    await run.send('entityChanges', [deleted, again]);
    await run.settled();
    await run.send('groupEvents', [groupEvent('group_activity', 201, { times_seen: 2 })]);
    await run.settled();
    expect(await run.commands()).toEqual([
      expect.objectContaining({ command: 'open', issue_id: 201 }),
      system(deleted, 201, 'delete'),
    ]);
    expect(await run.failures()).toEqual([
      { reason: 'stale_reference', entity: 'group', action: 'dlq' },
    ]);
  }, 90_000);

  it('with SHOAL_POLICY_STALE_REFERENCE_GROUP=skip a group event of a deleted group is skipped; a group id that is not a number is schema_invalid', async () => {
    const run = await start({ SHOAL_POLICY_STALE_REFERENCE_GROUP: 'skip' });
    await run.send('entityChanges', [
      entity('group', '202', 'deleted'),
      entity('group', 'not-a-number', 'deleted'),
    ]);
    await run.settled();
    await run.send('groupEvents', [created(202)]);
    await run.settled();
    expect((await run.commands()).map((c) => [c.command, c.issue_id])).toEqual([['delete', 202]]);
    expect(await run.failures()).toEqual([
      { reason: 'schema_invalid', entity: null, action: 'dlq' },
      { reason: 'stale_reference', entity: 'group', action: 'skip' },
    ]);
  }, 90_000);

  it("a deleted project hides each of its live issues, a group created in it opens hidden; restored, they are shown again; other projects' issues are untouched", async () => {
    const run = await start();
    await run.send('groupEvents', [
      created(301, 3),
      created(302, 3),
      created(303, 3),
      created(401, 4),
    ]);
    await run.settled();
    await run.send('entityChanges', [entity('group', '303', 'deleted', { project_id: 3 })]);
    const projectDeleted = entity('project', '3', 'deleted');
    await run.send('entityChanges', [projectDeleted]);
    await run.settled();
    const late = created(304, 3);
    await run.send('groupEvents', [late]);
    await run.settled();
    const restored = entity('project', '3', 'restored');
    await run.send('entityChanges', [restored]);
    await run.settled();
    const commands = await run.commands();
    expect(commands.slice(5)).toEqual([
      { ...system(projectDeleted, 301, 'hide'), project_id: 3 },
      { ...system(projectDeleted, 302, 'hide'), project_id: 3 },
      expect.objectContaining({ command: 'open', issue_id: 304, project_id: 3 }),
      { ...system(late, 304, 'hide'), project_id: 3 },
      { ...system(restored, 301, 'unhide'), project_id: 3 },
      { ...system(restored, 302, 'unhide'), project_id: 3 },
      { ...system(restored, 304, 'unhide'), project_id: 3 },
    ]);
    expect(commands.slice(0, 5).map((c) => [c.command, c.issue_id])).toEqual([
      ['open', 301],
      ['open', 302],
      ['open', 303],
      ['open', 401],
      ['delete', 303],
    ]);
    // one command id per source event and issue: distinct across the run
    expect(new Set(commands.map((c) => c.command_id)).size).toBe(commands.length);
  }, 90_000);
});

describe('intake: a project deleted while its group is created', () => {
  it('a group_created batch waits for a deletion of its project in flight and opens its issue hidden', async () => {
    const run = await start();
    await run.send('groupEvents', [created(551, 5)]);
    await run.settled();
    // a deletion of project 5 in flight: its row locked, not yet committed
    const deleting = await run.db.pool.connect();
    await deleting.query('BEGIN');
    await deleting.query('UPDATE lifecycle.intake_projects SET deleted_at = $1 WHERE id = 5', [
      at(600),
    ]);
    const late = created(552, 5);
    await run.send('groupEvents', [late]);
    await waitFor('the group_created batch waiting on the project', async () => {
      const { rowCount } = await run.db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
      );
      return (rowCount ?? 0) > 0;
    });
    await deleting.query('COMMIT');
    deleting.release();
    await run.settled();
    expect((await run.commands()).map((c) => [c.command, c.issue_id])).toEqual([
      ['open', 551],
      ['open', 552],
      ['hide', 552],
    ]);
  }, 90_000);
});

describe('intake: incidents', () => {
  /** The set_duplicate commands from the `from`-th on: issue, duplicate_of, incident. */
  const duplicates = async (run: Run) =>
    (await run.commands()).filter((c) => c.command === 'set_duplicate');
  const links = async (run: Run, from: number) =>
    (await duplicates(run))
      .slice(from)
      .map((c) => [c.issue_id, c.duplicate_of ?? null, c.incident_id ?? null]);

  it('linked → duplicate_of the canonical issue (the canonical itself: none), unlinked → cleared, merged → every member re-pointed; a new canonical re-points every member', async () => {
    const run = await start();
    await run.send(
      'groupEvents',
      [501, 502, 503, 504].map((g) => created(g)),
    );
    await run.settled();
    await run.send('incidents', [
      incident('incident_linked', 1, 501, { group_id: 501, reason: 'new_incident' }),
      incident('incident_linked', 1, 501, { group_id: 502 }),
      incident('incident_linked', 2, 503, { group_id: 503, reason: 'new_incident' }),
      incident('incident_linked', 2, 503, { group_id: 504 }),
    ]);
    await run.settled();
    expect(await links(run, 0)).toEqual([
      [501, null, 1],
      [502, 501, 1],
      [503, null, 2],
      [504, 503, 2],
    ]);
    const merged = incident('incident_merged', 1, 501, {
      merged_incident_id: 2,
      member_group_ids: [501, 502, 503, 504],
      reason: 'merge',
    });
    await run.send('incidents', [merged]);
    await run.settled();
    expect(await links(run, 4)).toEqual([
      [501, null, 1],
      [502, 501, 1],
      [503, 501, 1],
      [504, 501, 1],
    ]);
    expect((await duplicates(run))[6]).toEqual({
      ...system(merged, 503, 'set_duplicate'),
      duplicate_of: 501,
      incident_id: 1,
    });
    // the canonical group is deleted: dedup unlinks it and names the next oldest
    await run.send('entityChanges', [entity('group', '501', 'deleted', { project_id: 1 })]);
    await run.settled();
    await run.send('incidents', [
      incident('incident_unlinked', 1, 502, { group_id: 501, reason: 'group_deleted' }),
    ]);
    await run.settled();
    // 501's issue is a tombstone (deleted: no annotation); the others now point at 502
    expect(await links(run, 8)).toEqual([
      [502, null, 1],
      [503, 502, 1],
      [504, 502, 1],
    ]);
    expect((await run.commands()).filter((c) => c.command === 'delete')).toHaveLength(1);
  }, 120_000);

  it('a split seen out of order (linked to its new incident first) keeps the new link: the old unlink clears nothing', async () => {
    const run = await start();
    await run.send(
      'groupEvents',
      [601, 602].map((g) => created(g)),
    );
    await run.settled();
    await run.send('incidents', [
      incident('incident_linked', 5, 601, { group_id: 601, reason: 'new_incident' }),
      incident('incident_linked', 5, 601, { group_id: 602 }),
      // the split: 602 into incident 6 of its own, whose event came first
      incident('incident_linked', 6, 602, { group_id: 602, reason: 'split' }),
      incident('incident_unlinked', 5, 601, { group_id: 602, reason: 'split' }),
    ]);
    await run.settled();
    expect(await links(run, 0)).toEqual([
      [601, null, 5],
      [602, 601, 5],
      [602, null, 6],
    ]);
  }, 90_000);
});
