import { createHash } from 'node:crypto';
import type { Pool } from '@shoal/db';
import type pg from 'pg';
import type { CommandRow, IssueRow as DecidedIssueRow } from '../decide/rows.js';
import type { IssueStatus } from '../transitions.js';

/**
 * What the agent API reads from lifecycle's tables (the decide consumer is their only writer):
 * issues as the `Issue` schema shows them, an issue's history, command outcomes. Never writes.
 */

type Status = IssueStatus;

/** What the API reads with: lifecycle's pool, through `boundedReader`. */
export interface Reader {
  query<R extends object>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/**
 * Reads on `pool` with at most `connections` of them at once, the rest queued: the API shares
 * lifecycle's pool with the decide and intake consumers, and a burst of requests must not take the
 * connections their transactions need (the pool grows by API_POOL_CONNECTIONS for the API).
 */
export function boundedReader(pool: Pool, connections: number): Reader {
  let running = 0;
  const queued: (() => void)[] = [];
  return {
    async query<R extends object>(text: string, values?: unknown[]) {
      if (running >= connections) await new Promise<void>((resolve) => queued.push(resolve));
      running++;
      try {
        return await pool.query<R & pg.QueryResultRow>(text, values);
      } finally {
        running--;
        queued.shift()?.();
      }
    },
  };
}

export interface Issue {
  issue_id: number;
  group_id: number;
  project_id: number;
  status: Status;
  version: number;
  severity: string;
  category: string | null;
  assignee: string | null;
  claimed_by: string | null;
  claim_expires_at: string | null;
  sla_due_at: string | null;
  title: string | null;
  short_id: string | null;
  culprit: string | null;
  level: string | null;
  trace_id: string | null;
  request_id: string | null;
  release_sha: string | null;
  resolution: Record<string, unknown> | null;
  close_reason: string | null;
  duplicate_of: number | null;
  canonical_incident_id: number | null;
  times_seen: number;
  first_seen: string | null;
  last_seen: string | null;
  opened_at: string;
  status_since: string;
  updated_at: string;
  hidden: boolean;
  deleted_at: string | null;
}

/** An issue row with what the API needs beside the representation (never shown). */
export interface IssueRow extends Issue {
  claim_token_sha256: string | null;
  /** `updated_at` to the microsecond, as text: the list's keyset position. */
  position: string;
}

/** A timestamp column as the API shows it: ISO 8601 in UTC, milliseconds (null stays null). */
const iso = (column: string, as = column) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ${as}`;

const issueColumns = `id AS issue_id, id AS group_id, project_id, status, version, severity,
  category, assignee, claimed_by, claim_token_sha256, ${iso('claim_expires_at')}, ${iso('sla_due_at')},
  title, short_id, culprit, level, trace_id, request_id, release_sha, resolution, close_reason,
  duplicate_of, canonical_incident_id, times_seen, ${iso('first_seen')}, ${iso('last_seen')},
  ${iso('opened_at')}, ${iso('status_since')}, ${iso('updated_at')}, hidden, ${iso('deleted_at')},
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS position`;

/** The representation an answer shows (what only the API needs taken off). */
export function shown(row: IssueRow): Issue {
  const { claim_token_sha256: _sha, position: _position, ...issue } = row;
  return issue;
}

/**
 * The ETag of an issue's representation: its version (what If-Match compares) and a digest of
 * the rest, since `observe` changes counts and times without a new version.
 */
export function etagOf(issue: Issue): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(issue))
    .digest('base64url')
    .slice(0, 12);
  return `"${issue.version}-${digest}"`;
}

interface IssueReads {
  ids: number[];
  settle: ((rows: Map<number, IssueRow> | Error) => void)[];
}
const issueReads = new WeakMap<Reader, IssueReads>();

/**
 * The issue `id` as it is now. The reads asked on `pool` in one turn of the event loop go out
 * together, one statement for all (under load a turn serves many requests: one round trip instead of
 * one each, which would queue for the reader's few connections); when it fails, each of them does.
 */
export function readIssue(pool: Reader, id: number): Promise<IssueRow | undefined> {
  // no issue has it (ids are bigints read as safe integers), and PostgreSQL would refuse the whole
  // statement for it, failing the other reads of the turn
  if (!Number.isSafeInteger(id)) return Promise.resolve(undefined);
  let reads = issueReads.get(pool);
  if (!reads) {
    const taken: IssueReads = { ids: [], settle: [] };
    issueReads.set(pool, (reads = taken));
    setImmediate(() => {
      issueReads.delete(pool);
      pool
        .query<IssueRow>(`SELECT ${issueColumns} FROM issues WHERE id = ANY($1::bigint[])`, [
          [...new Set(taken.ids)],
        ])
        .then(
          ({ rows }) => new Map(rows.map((row) => [row.issue_id, row])),
          (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
        )
        .then((result) => taken.settle.forEach((settle) => settle(result)));
    });
  }
  reads.ids.push(id);
  return new Promise((resolve, reject) =>
    reads.settle.push((rows) => (rows instanceof Error ? reject(rows) : resolve(rows.get(id)))),
  );
}

export interface HistoryEntry {
  version: number;
  event_type: string;
  command_id: string;
  actor: string;
  origin: string;
  from_status: string | null;
  to_status: string;
  at: string;
  occurred_at: string | null;
  /** Seconds the issue had been in from_status. */
  seconds_in_previous_state: number | null;
  details: Record<string, unknown>;
}

export async function readHistory(pool: Reader, id: number): Promise<HistoryEntry[]> {
  const { rows } = await pool.query<HistoryEntry>(
    `SELECT version, event_type, command_id, actor, origin, from_status, to_status, ${iso('at')},
            ${iso('occurred_at')}, extract(epoch FROM in_previous_state)::float8 AS seconds_in_previous_state,
            details
       FROM issue_history WHERE issue_id = $1 ORDER BY version`,
    [id],
  );
  return rows;
}

export interface IssueFilters {
  status?: Status[];
  assignee?: string;
  claimed_by?: string;
  project?: number;
  severity?: string[];
  category?: string;
  claimable?: boolean;
  updated_since?: string;
  trace_id?: string;
  sla_breached?: boolean;
  duplicates?: boolean;
}

/** Keyset position: after this (updated_at, id). */
export interface Position {
  at: string;
  id: number;
}

/**
 * One page of live issues (not deleted, project not deleted) matching every filter, in
 * (updated_at, id) order after `after`: a client that keeps the last page's position sees each
 * later change once more, never misses one. `claimableStatuses`: where a claim may start.
 */
export async function listIssues(
  pool: Reader,
  filters: IssueFilters,
  after: Position | undefined,
  limit: number,
  claimableStatuses: readonly Status[],
): Promise<IssueRow[]> {
  const where = ['deleted_at IS NULL', 'NOT hidden'];
  const params: unknown[] = [];
  const param = (value: unknown) => (params.push(value), `$${params.length}`);
  const liveLease = 'claimed_by IS NOT NULL AND claim_expires_at > now()';
  if (filters.status) where.push(`status = ANY(${param(filters.status)}::text[])`);
  if (filters.severity) where.push(`severity = ANY(${param(filters.severity)}::text[])`);
  if (filters.assignee !== undefined) where.push(`assignee = ${param(filters.assignee)}`);
  if (filters.claimed_by !== undefined)
    where.push(`claimed_by = ${param(filters.claimed_by)} AND claim_expires_at > now()`);
  if (filters.project !== undefined) where.push(`project_id = ${param(filters.project)}`);
  if (filters.category !== undefined) where.push(`category = ${param(filters.category)}`);
  if (filters.trace_id !== undefined) where.push(`trace_id = ${param(filters.trace_id)}`);
  if (filters.updated_since !== undefined)
    where.push(`updated_at >= ${param(filters.updated_since)}::timestamptz`);
  if (filters.claimable !== undefined) {
    const claimable = `(status = ANY(${param(claimableStatuses)}::text[]) AND NOT (${liveLease}))`;
    where.push(filters.claimable ? claimable : `NOT ${claimable}`);
  }
  if (filters.sla_breached !== undefined) {
    const breached = `(sla_due_at < now() AND status NOT IN ('resolved', 'closed'))`;
    where.push(filters.sla_breached ? breached : `NOT coalesce(${breached}, false)`);
  }
  if (filters.duplicates !== undefined)
    where.push(filters.duplicates ? 'duplicate_of IS NOT NULL' : 'duplicate_of IS NULL');
  if (after)
    where.push(`(updated_at, id) > (${param(after.at)}::timestamptz, ${param(after.id)}::bigint)`);
  const { rows } = await pool.query<IssueRow>(
    // the columns, qualified: a bare `updated_at` is the millisecond text the row shows
    `SELECT ${issueColumns} FROM issues WHERE ${where.join(' AND ')}
      ORDER BY issues.updated_at, issues.id LIMIT ${param(limit)}`,
    params,
  );
  return rows;
}

export interface Outcome {
  command_id: string;
  issue_id: number;
  command: string;
  actor: string;
  outcome: 'applied' | 'ignored' | 'rejected';
  reason: string | null;
  detail: string | null;
  allowed_transitions: string[] | null;
  version: number | null;
  issue: {
    status: Status;
    version: number;
    claimed_by: string | null;
    claim_expires_at: string | null;
  } | null;
  decided_at: string;
}

/** An outcome with the issue as it is now (read in the same statement): what a 200 answers. */
export interface Decided extends Outcome {
  current: IssueRow | null;
}

/**
 * The outcomes recorded for these command ids (an id absent: not decided, or never sent), each
 * with its issue as it is now: one statement for every reply a notification wakes.
 */
export async function readOutcomes(pool: Reader, ids: string[]): Promise<Map<string, Decided>> {
  const { rows } = await pool.query<Decided>(
    `SELECT c.command_id, c.issue_id, c.command, c.actor, c.outcome, c.reason, c.detail,
            c.allowed_transitions, c.version, c.issue, ${iso('c.decided_at', 'decided_at')},
            row_to_json(i) AS current
       FROM lifecycle_commands c
       LEFT JOIN LATERAL (SELECT ${issueColumns} FROM issues WHERE id = c.issue_id) i ON true
      WHERE c.command_id = ANY($1::uuid[])`,
    [ids],
  );
  return new Map(rows.map((r) => [r.command_id, r]));
}

/** A time as `iso()` reads it back: ISO 8601 in UTC, milliseconds. */
const isoOf = (value: string | null) => (value === null ? null : new Date(value).toISOString());

/** A value as PostgreSQL's jsonb keeps it: object keys shorter first, then in byte order. */
function asJsonb(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(asJsonb);
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value).sort((a, b) => {
    const [x, y] = [Buffer.from(a), Buffer.from(b)];
    return x.length - y.length || Buffer.compare(x, y);
  });
  return Object.fromEntries(
    keys.map((k) => [k, asJsonb((value as Record<string, unknown>)[k])] as const),
  );
}

/**
 * The issue as decide's batch left it, in the shape (and key order) `issueColumns` reads it: the
 * same representation, so the same ETag, as a read of the committed row.
 */
export function issueRowOf(row: DecidedIssueRow): IssueRow {
  const updatedAt = isoOf(row.updated_at)!;
  return {
    issue_id: row.id,
    group_id: row.id,
    project_id: row.project_id,
    status: row.status,
    version: row.version,
    severity: row.severity,
    category: row.category,
    assignee: row.assignee,
    claimed_by: row.claimed_by,
    claim_token_sha256: row.claim_token_sha256,
    claim_expires_at: isoOf(row.claim_expires_at),
    sla_due_at: isoOf(row.sla_due_at),
    title: row.title,
    short_id: row.short_id,
    culprit: row.culprit,
    level: row.level,
    trace_id: row.trace_id,
    request_id: row.request_id,
    release_sha: row.release_sha,
    resolution:
      row.resolution === null ? null : (asJsonb(row.resolution) as Record<string, unknown>),
    close_reason: row.close_reason,
    duplicate_of: row.duplicate_of,
    canonical_incident_id: row.canonical_incident_id,
    times_seen: row.times_seen,
    first_seen: isoOf(row.first_seen),
    last_seen: isoOf(row.last_seen),
    opened_at: isoOf(row.opened_at)!,
    status_since: isoOf(row.status_since)!,
    updated_at: updatedAt,
    hidden: row.hidden,
    deleted_at: isoOf(row.deleted_at),
    // microseconds: decide's times are the log's, in milliseconds
    position: updatedAt.replace(/Z$/, '000Z'),
  };
}

/** A command's outcome as decide recorded it, with its issue as the batch left it: what `readOutcomes` reads once committed. */
export function decidedOf(command: CommandRow, issue: DecidedIssueRow | undefined): Decided {
  return {
    command_id: command.command_id,
    issue_id: command.issue_id,
    command: command.command,
    actor: command.actor,
    outcome: command.outcome,
    reason: command.reason,
    detail: command.detail,
    allowed_transitions: command.allowed_transitions,
    version: command.version,
    issue: command.issue === null ? null : (asJsonb(command.issue) as Outcome['issue']),
    decided_at: isoOf(command.decided_at)!,
    current: issue ? issueRowOf(issue) : null,
  };
}
