import type { Pool, PoolClient } from '@shoal/db';
import { errorTrackerLine, type ErrorTrackerLine } from '@shoal/config';
import {
  maskUrl,
  redactSecrets,
  runtimeSchemas,
  withDatabase,
  withKafkaAdmin,
  withServiceTransaction,
} from '../connections.js';
import {
  highWatermarks,
  storedOffsets,
  withLag,
  type OffsetRow,
  type StoredOffset,
} from '../offsets/list.js';

/**
 * What `shoal status` reports, read only: the CLI's own view of Kafka, PostgreSQL, the registry
 * and the error tracker (one line each, `down` or `not configured` saying why), then each service
 * (every schema holding the runtime's tables) from PostgreSQL: its instances' heartbeats
 * (kafka-runtime `heartbeat.ts`), lag per partition (Kafka's high watermark − the offset stored in
 * PostgreSQL), outstanding dead letters per reason, parked keys, held references per kind, the
 * outbox backlog, and the groups of a service that keeps them. A dependency that is down leaves
 * what needs it unknown, never fails the whole report.
 */

export interface DependencyLine {
  name: 'kafka' | 'postgres' | 'registry' | 'error tracker';
  status: 'ok' | ErrorTrackerLine['status'];
  detail: string;
  /** The error tracker's line never decides readiness. */
  decidesReadiness: boolean;
}

export interface InstanceStatus {
  instanceId: string;
  host: string;
  pid: number;
  startedAt: string;
  beatAt: string;
  /** Beat within three of its intervals: still running. */
  live: boolean;
  ready: boolean;
  /** Each check as the instance last saw it (the error tracker's line among them). */
  checks: Record<string, { status: string; error?: string; detail?: string }>;
}

export interface GroupStatus {
  group: string;
  partitions: OffsetRow[];
  /** Dead letters neither replayed nor discarded since they last failed, per reason. */
  deadLetters: Record<string, number>;
  parked: { keys: number; messages: number; oldest: string | null };
  held: { entity: string; messages: number; oldest: string; nextDeadline: string }[];
}

export interface ServiceStatus {
  service: string;
  ready: boolean;
  /** Why it is not ready; null when it is. */
  why: string | null;
  instances: InstanceStatus[];
  groups: GroupStatus[];
  outbox: { unpublishedRows: number; setAside: number };
  /** Groups by status, for a service that keeps groups (grouping); null for the others. */
  issueGroups: Record<string, number> | null;
  /** Lifecycle's issues by status, without the deleted ones. */
  issues: Record<string, number> | null;
}

export interface Status {
  ready: boolean;
  dependenciesDown: boolean;
  dependencies: DependencyLine[];
  /** Null when PostgreSQL is down (nothing to read them from). */
  services: ServiceStatus[] | null;
}

const errorText = (error: unknown) => redactSecrets((error as Error).message || String(error));

async function kafkaLine(brokers: string[]): Promise<DependencyLine> {
  const line = { name: 'kafka' as const, decidesReadiness: true };
  try {
    const cluster = await withKafkaAdmin(brokers, (admin) => admin.describeCluster());
    return {
      ...line,
      status: 'ok',
      detail: `${cluster.brokers.length} broker(s) at ${brokers.join(',')}`,
    };
  } catch (error) {
    return { ...line, status: 'down', detail: `${brokers.join(',')}: ${errorText(error)}` };
  }
}

async function registryLine(url: string): Promise<DependencyLine> {
  const line = { name: 'registry' as const, decidesReadiness: true };
  const shown = maskUrl(url);
  try {
    const response = await fetch(`${url}/subjects`, { signal: AbortSignal.timeout(3_000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const subjects = (await response.json()) as unknown[];
    return { ...line, status: 'ok', detail: `${subjects.length} subject(s) at ${shown}` };
  } catch (error) {
    // fetch says only "fetch failed"; why is in its cause
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message;
    return {
      ...line,
      status: 'down',
      detail: `${shown}: ${errorText(error)}${why ? ` (${redactSecrets(why)})` : ''}`,
    };
  }
}

function trackerLine(): DependencyLine {
  return { name: 'error tracker', decidesReadiness: false, ...errorTrackerLine() };
}

const tablesOf = async (tx: PoolClient, schema: string) =>
  new Set(
    (
      await tx.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`,
        [schema],
      )
    ).rows.map((r) => r.table_name),
  );

async function instancesOf(tx: PoolClient): Promise<InstanceStatus[]> {
  const { rows } = await tx.query<{
    instance_id: string;
    host: string;
    pid: number;
    started_at: Date;
    beat_at: Date;
    live: boolean;
    ready: boolean;
    checks: InstanceStatus['checks'];
  }>(
    `SELECT instance_id, host, pid, started_at, beat_at, ready, checks,
       beat_at > now() - 3 * every_ms * interval '1 millisecond' AS live
     FROM instance_heartbeats ORDER BY started_at`,
  );
  return rows.map((r) => ({
    instanceId: r.instance_id,
    host: r.host,
    pid: r.pid,
    startedAt: r.started_at.toISOString(),
    beatAt: r.beat_at.toISOString(),
    live: r.live,
    ready: r.ready,
    checks: r.checks,
  }));
}

/**
 * Outstanding dead letters per group and reason: each message id's latest failure (dead-lettered,
 * not skipped) unless `shoal dlq replay` re-published it or `discard` gave it up after that.
 */
async function deadLettersOf(
  tx: PoolClient,
  cliTables: Set<string>,
): Promise<Map<string, Record<string, number>>> {
  const since = (table: string, column: string) =>
    cliTables.has(table)
      ? `AND NOT EXISTS (SELECT 1 FROM shoal_cli.${table} c
           WHERE c.message_id = f.message_id AND c.${column} > f.failed_at)`
      : '';
  const { rows } = await tx.query<{ consumer_group: string; reason: string; n: number }>(
    `SELECT consumer_group, reason, count(*)::int AS n FROM (
       SELECT DISTINCT ON (consumer_group, coalesce(message_id, id::text))
         consumer_group, message_id, reason, failed_at
       FROM message_failures WHERE action = 'dlq'
       ORDER BY consumer_group, coalesce(message_id, id::text), failed_at DESC, id DESC) f
     WHERE true ${since('dlq_replayed', 'replayed_at')} ${since('dlq_discards', 'discarded_at')}
     GROUP BY consumer_group, reason ORDER BY consumer_group, reason`,
  );
  const byGroup = new Map<string, Record<string, number>>();
  for (const r of rows)
    byGroup.set(r.consumer_group, { ...byGroup.get(r.consumer_group), [r.reason]: r.n });
  return byGroup;
}

async function parkedOf(tx: PoolClient): Promise<Map<string, GroupStatus['parked']>> {
  const { rows } = await tx.query<{
    consumer_group: string;
    keys: number;
    messages: number;
    oldest: Date | null;
  }>(
    `SELECT g.consumer_group,
       (SELECT count(*)::int FROM parked_keys k WHERE k.consumer_group = g.consumer_group
          AND k.head_message_id IS NOT NULL) AS keys,
       (SELECT count(*)::int FROM parked_messages m WHERE m.consumer_group = g.consumer_group) AS messages,
       (SELECT min(parked_at) FROM parked_keys k WHERE k.consumer_group = g.consumer_group) AS oldest
     FROM (SELECT DISTINCT consumer_group FROM consumer_offsets) g`,
  );
  return new Map(
    rows.map((r) => [
      r.consumer_group,
      { keys: r.keys, messages: r.messages, oldest: r.oldest?.toISOString() ?? null },
    ]),
  );
}

async function heldOf(tx: PoolClient): Promise<Map<string, GroupStatus['held']>> {
  const { rows } = await tx.query<{
    consumer_group: string;
    entity: string;
    messages: number;
    oldest: Date;
    next_deadline: Date;
  }>(
    `SELECT consumer_group, entity, count(*)::int AS messages, min(held_at) AS oldest,
       min(deadline_at) AS next_deadline
     FROM held_messages GROUP BY consumer_group, entity ORDER BY consumer_group, entity`,
  );
  const byGroup = new Map<string, GroupStatus['held']>();
  for (const r of rows)
    byGroup.set(r.consumer_group, [
      ...(byGroup.get(r.consumer_group) ?? []),
      {
        entity: r.entity,
        messages: r.messages,
        oldest: r.oldest.toISOString(),
        nextDeadline: r.next_deadline.toISOString(),
      },
    ]);
  return byGroup;
}

/** `table`'s rows by status (grouping's groups, lifecycle's issues), when the service has it. */
async function countsByStatus(
  tx: PoolClient,
  tables: Set<string>,
  table: 'groups' | 'issues',
  where = 'true',
) {
  if (!tables.has(table)) return null;
  const { rows: columns } = await tx.query(
    `SELECT 1 FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'status'`,
    [table],
  );
  if (columns.length === 0) return null;
  const { rows } = await tx.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM ${table} WHERE ${where} GROUP BY status ORDER BY status`,
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

function readinessOf(instances: InstanceStatus[], heartbeats: boolean): string | null {
  if (!heartbeats) return 'no instance_heartbeats table: not migrated by a runtime that beats';
  const live = instances.filter((i) => i.live);
  if (live.length === 0) {
    const last = instances.at(-1);
    return last
      ? `no live instance (last beat ${last.beatAt})`
      : 'no live instance (none beating: stopped, or never started)';
  }
  const notReady = live.filter((i) => !i.ready);
  if (notReady.length === 0) return null;
  return notReady
    .map((i) => {
      const failing = Object.entries(i.checks)
        .filter(([name, c]) => name !== 'error_tracker' && c.status !== 'ok')
        .map(([name, c]) => `${name}: ${c.error ?? c.status}`);
      return `${i.instanceId} not ready (${failing.join('; ') || 'no check named'})`;
    })
    .join(', ');
}

async function serviceStatus(
  pool: Pool,
  databaseUrl: string,
  schema: string,
  cliTables: Set<string>,
): Promise<{
  status: Omit<ServiceStatus, 'groups'>;
  stored: StoredOffset[];
  groups: Omit<GroupStatus, 'partitions'>[];
}> {
  return withServiceTransaction(pool, schema, databaseUrl, async (tx) => {
    const tables = await tablesOf(tx, schema);
    const heartbeats = tables.has('instance_heartbeats');
    const instances = heartbeats ? await instancesOf(tx) : [];
    const stored = await storedOffsets(tx, schema);
    const dead = await deadLettersOf(tx, cliTables);
    const parked = tables.has('parked_keys') ? await parkedOf(tx) : new Map();
    const held = tables.has('held_messages') ? await heldOf(tx) : new Map();
    const { rows: outbox } = await tx.query<{ unpublished: number; set_aside: number }>(
      `SELECT (SELECT count(*)::int FROM outbox WHERE published_at IS NULL) AS unpublished,
         ${tables.has('outbox_failures') ? '(SELECT count(*)::int FROM outbox_failures)' : '0'} AS set_aside`,
    );
    const why = readinessOf(instances, heartbeats);
    return {
      status: {
        service: schema,
        ready: why === null,
        why,
        instances,
        outbox: { unpublishedRows: outbox[0]!.unpublished, setAside: outbox[0]!.set_aside },
        issueGroups: await countsByStatus(tx, tables, 'groups'),
        // tombstoned issues (their group deleted) are history, not work
        issues: await countsByStatus(tx, tables, 'issues', 'deleted_at IS NULL'),
      },
      stored,
      groups: [...new Set(stored.map((o) => o.group))].map((group) => ({
        group,
        deadLetters: dead.get(group) ?? {},
        parked: parked.get(group) ?? { keys: 0, messages: 0, oldest: null },
        held: held.get(group) ?? [],
      })),
    };
  });
}

export async function gatherStatus(config: {
  DATABASE_URL: string;
  KAFKA_BROKERS: string[];
  SCHEMA_REGISTRY_URL: string;
}): Promise<Status> {
  const [kafka, registry] = await Promise.all([
    kafkaLine(config.KAFKA_BROKERS),
    registryLine(config.SCHEMA_REGISTRY_URL),
  ]);
  const postgres: DependencyLine = {
    name: 'postgres',
    decidesReadiness: true,
    status: 'ok',
    detail: `at ${maskUrl(config.DATABASE_URL)}`,
  };
  const read = await withDatabase(config.DATABASE_URL, async (pool) => {
    try {
      const { rows } = await pool.query<{ version: string }>(
        `SELECT current_setting('server_version') AS version`,
      );
      postgres.detail = `PostgreSQL ${rows[0]!.version} ${postgres.detail}`;
    } catch (error) {
      postgres.status = 'down';
      postgres.detail = `${maskUrl(config.DATABASE_URL)}: ${errorText(error)}`;
      return null;
    }
    const { rows: cli } = await pool.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'shoal_cli'`,
    );
    const cliTables = new Set(cli.map((r) => r.table_name));
    const each = [];
    for (const schema of await runtimeSchemas(pool))
      each.push(await serviceStatus(pool, config.DATABASE_URL, schema, cliTables));
    return each;
  });
  const topics = [...new Set((read ?? []).flatMap((s) => s.stored.map((o) => o.topic)))];
  const marks =
    kafka.status === 'ok'
      ? await highWatermarks(config.KAFKA_BROKERS, topics).catch(() => new Map<string, number>())
      : new Map<string, number>();
  const services =
    read?.map(({ status, stored, groups }) => ({
      ...status,
      groups: groups.map((g) => ({
        ...g,
        partitions: withLag(
          stored.filter((o) => o.group === g.group),
          marks,
        ),
      })),
    })) ?? null;
  const dependencies = [kafka, postgres, registry, trackerLine()];
  const dependenciesDown = dependencies.some((d) => d.decidesReadiness && d.status !== 'ok');
  return {
    ready: !dependenciesDown && services !== null && services.every((s) => s.ready),
    dependenciesDown,
    dependencies,
    services,
  };
}
