import type { LifecycleCommand } from '@shoal/contracts';
import { storableText, type PoolClient } from '@shoal/db';
import type {
  CloseReason,
  GroupStatus,
  IssueStatus,
  Refusal,
  Resolution,
  Severity,
} from '../transitions.js';

/**
 * The decide consumer's reads and writes of its tables, a fixed number of round trips per batch
 * (each costs about as much as a statement's work at the batch sizes an agent's latency sees): the
 * issues and the commands decided before come in with one SELECT, early commands (only when an
 * issue opens) with another, and every change goes out in one statement, as JSON through
 * `jsonb_populate_recordset`, so a row's shape here is its table's.
 *
 * Blocks on: PostgreSQL (the batch's transaction). Throws: what PostgreSQL throws.
 */

/** An `issues` row; times are ISO strings (UTC, milliseconds). */
export interface IssueRow {
  id: number;
  project_id: number;
  status: IssueStatus;
  version: number;
  severity: Severity;
  severity_set: boolean;
  category: string | null;
  assignee: string | null;
  claimed_by: string | null;
  claim_token_sha256: string | null;
  claim_expires_at: string | null;
  claim_generation: number;
  sla_due_at: string | null;
  /** When the SLA started: the open, or the last regression. */
  sla_since: string;
  /** An agent set sla_due_at itself: a severity change leaves it. */
  sla_set: boolean;
  trace_id: string | null;
  request_id: string | null;
  release_sha: string | null;
  resolution: Resolution | null;
  close_reason: CloseReason | null;
  duplicate_of: number | null;
  canonical_incident_id: number | null;
  title: string | null;
  short_id: string | null;
  culprit: string | null;
  level: string | null;
  primary_fingerprint: string | null;
  environment: string | null;
  release: string | null;
  times_seen: number;
  first_seen: string | null;
  last_seen: string | null;
  group_status: GroupStatus;
  group_resolution_id: number;
  group_sequence: number;
  /** The last conditional status change sent grouping (its event id), answered by an echo or a noop. */
  group_request_id: string | null;
  opened_at: string;
  status_since: string;
  updated_at: string;
  clock: string;
  hidden: boolean;
  deleted_at: string | null;
}

const TIME_COLUMNS = [
  'claim_expires_at',
  'sla_due_at',
  'sla_since',
  'first_seen',
  'last_seen',
  'opened_at',
  'status_since',
  'updated_at',
  'clock',
  'deleted_at',
] as const;

/** An `issue_history` row: one per lifecycle event (its version). */
export interface HistoryRow {
  issue_id: number;
  version: number;
  event_type: string;
  command_id: string;
  actor: string;
  origin: 'agent' | 'system';
  from_status: IssueStatus | null;
  to_status: IssueStatus;
  at: string;
  occurred_at: string | null;
  in_previous_state: string | null;
  details: Record<string, unknown>;
}

/** A `lifecycle_commands` row: a command's outcome. */
export interface CommandRow {
  command_id: string;
  issue_id: number;
  command: string;
  actor: string;
  outcome: 'applied' | 'ignored' | 'rejected';
  reason: Refusal | string | null;
  detail: string | null;
  allowed_transitions: IssueStatus[] | null;
  version: number | null;
  issue: {
    status: IssueStatus;
    version: number;
    claimed_by: string | null;
    claim_expires_at: string | null;
  } | null;
  decided_at: string;
}

/** A system command that came before its issue's open. */
export interface EarlyCommand {
  issue_id: number;
  command_id: string;
  offset: number;
  command: LifecycleCommand;
}

/** `value` with every string as PostgreSQL can store it (`storableText`: U+0000 as its escape). */
export function storable<V>(value: V): V {
  if (typeof value === 'string') return storableText(value) as V;
  if (Array.isArray(value)) return value.map(storable) as V;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, storable(v)])) as V;
  return value;
}

const iso = (value: string | null): string | null =>
  value === null ? null : new Date(value).toISOString();

/**
 * What a batch starts from, in one statement: which of `commandIds` were decided before (a re-send
 * past the ledger's window is not judged again), the issues of `issueIds`, locked for the batch,
 * and the transaction's id (the outcomes' NOTIFY names it: decided-here.ts).
 */
export async function batchStart(
  tx: PoolClient,
  commandIds: string[],
  issueIds: number[],
): Promise<{ decided: Set<string>; issues: Map<number, IssueRow>; txid: string }> {
  const { rows } = await tx.query<{ decided: string[]; issues: IssueRow[]; txid: string }>(
    `SELECT txid_current()::text AS txid,
            (SELECT coalesce(array_agg(command_id::text), '{}') FROM lifecycle_commands
              WHERE command_id = ANY($1::uuid[])) AS decided,
            (SELECT coalesce(jsonb_agg(to_jsonb(i) ORDER BY i.id), '[]')
               FROM (SELECT * FROM issues WHERE id = ANY($2::bigint[]) ORDER BY id FOR UPDATE) i) AS issues`,
    [commandIds, issueIds],
  );
  const { decided, issues, txid } = rows[0]!;
  return {
    txid,
    decided: new Set(decided),
    issues: new Map(
      issues.map((row) => {
        for (const column of TIME_COLUMNS)
          (row as unknown as Record<string, unknown>)[column] = iso(row[column]);
        return [row.id, row];
      }),
    ),
  };
}

/** The early commands waiting for `issueIds`, in log order. */
export async function earlyCommandsOf(tx: PoolClient, issueIds: number[]): Promise<EarlyCommand[]> {
  if (issueIds.length === 0) return [];
  const { rows } = await tx.query<{
    issue_id: string;
    command_id: string;
    offset: string;
    command: LifecycleCommand;
  }>(
    `SELECT issue_id, command_id::text, "offset", command FROM early_commands
     WHERE issue_id = ANY($1::bigint[]) ORDER BY issue_id, "offset", command_id`,
    [issueIds],
  );
  return rows.map((r) => ({ ...r, issue_id: Number(r.issue_id), offset: Number(r.offset) }));
}

const ISSUE_COLUMNS: readonly (keyof IssueRow)[] = [
  'project_id',
  'status',
  'version',
  'severity',
  'severity_set',
  'category',
  'assignee',
  'claimed_by',
  'claim_token_sha256',
  'claim_expires_at',
  'claim_generation',
  'sla_due_at',
  'sla_since',
  'sla_set',
  'trace_id',
  'request_id',
  'release_sha',
  'resolution',
  'close_reason',
  'duplicate_of',
  'canonical_incident_id',
  'title',
  'short_id',
  'culprit',
  'level',
  'primary_fingerprint',
  'environment',
  'release',
  'times_seen',
  'first_seen',
  'last_seen',
  'group_status',
  'group_resolution_id',
  'group_sequence',
  'group_request_id',
  'opened_at',
  'status_since',
  'updated_at',
  'clock',
  'hidden',
  'deleted_at',
];

/**
 * What a batch changed, written in one statement (a data-modifying CTE per table: one round trip);
 * the outcomes' trigger (their NOTIFY) fires for it as for an INSERT of its own.
 */
export async function writeBatch(
  tx: PoolClient,
  changes: {
    issues: IssueRow[];
    history: HistoryRow[];
    commands: CommandRow[];
    early: EarlyCommand[];
    earlyDone: { issue_id: number; command_id: string }[];
  },
): Promise<void> {
  const values: string[] = [];
  const writes: string[] = [];
  const write = (rows: unknown[], statement: (param: string) => string) => {
    if (rows.length === 0) return;
    values.push(JSON.stringify(rows));
    writes.push(`w${writes.length} AS (${statement(`$${values.length}::jsonb`)})`);
  };
  write(
    changes.issues,
    (rows) => `INSERT INTO issues SELECT * FROM jsonb_populate_recordset(NULL::issues, ${rows})
       ON CONFLICT (id) DO UPDATE SET (${ISSUE_COLUMNS.join(', ')}) =
         (${ISSUE_COLUMNS.map((c) => `EXCLUDED.${c}`).join(', ')})`,
  );
  write(
    changes.history,
    (rows) =>
      `INSERT INTO issue_history SELECT * FROM jsonb_populate_recordset(NULL::issue_history, ${rows})`,
  );
  write(
    changes.commands,
    (rows) => `INSERT INTO lifecycle_commands
       SELECT * FROM jsonb_populate_recordset(NULL::lifecycle_commands, ${rows}) ON CONFLICT DO NOTHING`,
  );
  write(
    changes.early,
    (rows) => `INSERT INTO early_commands
       SELECT * FROM jsonb_populate_recordset(NULL::early_commands, ${rows}) ON CONFLICT DO NOTHING`,
  );
  write(
    changes.earlyDone,
    (rows) => `DELETE FROM early_commands e
       USING jsonb_to_recordset(${rows}) AS d(issue_id bigint, command_id uuid)
       WHERE e.issue_id = d.issue_id AND e.command_id = d.command_id`,
  );
  if (writes.length) await tx.query(`WITH ${writes.join(', ')} SELECT 1`, values);
}
