/**
 * Regression's projection of groups, for one batch: the rows it names, locked in id order, changed
 * in memory in the batch's order, written back at once. A `status_changed` applies only when its
 * sequence is above the last applied (a replayed older one is ignored).
 */
import type { GroupEvent } from '@shoal/contracts';
import { storableText, type PoolClient } from '@shoal/db';
import type { Ignore, Resolution } from '@shoal/regression-rules';

export interface GroupRow {
  id: number;
  project_id: number;
  primary_fingerprint: string | null;
  status: 'unresolved' | 'resolved' | 'ignored';
  sequence: number;
  resolution_id: number;
  resolution: Resolution | null;
  ignore: Ignore | null;
  ignored_at: string | null;
  occurrences_since_ignored: number;
  times_seen: number;
  first_seen: string | null;
  rate_before_per_hour: number;
  hour_started: string | null;
  occurrences_this_hour: number;
  deleted_at: string | null;
}

const HOUR_MS = 3_600_000;
const iso = (v: Date | string | null) => (v === null ? null : new Date(v).toISOString());

export class GroupRows {
  private readonly dirty = new Set<GroupRow>();
  /** group id → the status sequence a proposal already expects */
  private readonly proposals = new Map<number, Set<number>>();

  private constructor(private readonly rows: Map<number, GroupRow>) {}

  /** Locks (in id order) and loads the groups `events` name, with the proposals at their current sequence, in one statement. */
  static async lock(tx: PoolClient, events: GroupEvent[]): Promise<GroupRows> {
    const ids = [...new Set(events.map((e) => e.group_id))].sort((a, b) => a - b);
    // one round trip: the rows, and whether a proposal already expects each one's current sequence
    const { rows } = await tx.query<Record<string, unknown>>(
      `SELECT g.*, EXISTS (SELECT 1 FROM regressions r WHERE r.group_id = g.id AND r.expected_sequence = g.sequence)
         AS proposed
       FROM groups g WHERE g.id = ANY($1::bigint[]) ORDER BY g.id FOR UPDATE OF g`,
      [ids],
    );
    const loaded = new GroupRows(
      new Map(
        rows.map((r) => {
          const row: GroupRow = {
            id: Number(r.id),
            project_id: Number(r.project_id),
            primary_fingerprint: r.primary_fingerprint as string | null,
            status: r.status as GroupRow['status'],
            sequence: Number(r.sequence),
            resolution_id: Number(r.resolution_id),
            resolution: r.resolution as Resolution | null,
            ignore: r.ignore as Ignore | null,
            ignored_at: iso(r.ignored_at as Date | null),
            occurrences_since_ignored: Number(r.occurrences_since_ignored),
            times_seen: Number(r.times_seen),
            first_seen: iso(r.first_seen as Date | null),
            rate_before_per_hour: Number(r.rate_before_per_hour),
            hour_started: iso(r.hour_started as Date | null),
            occurrences_this_hour: Number(r.occurrences_this_hour),
            deleted_at: iso(r.deleted_at as Date | null),
          };
          return [row.id, row];
        }),
      ),
    );
    for (const r of rows) if (r.proposed) loaded.markProposed(Number(r.id), Number(r.sequence));
    return loaded;
  }

  get(id: number): GroupRow | undefined {
    return this.rows.get(id);
  }

  private row(id: number, project: number): GroupRow {
    let row = this.rows.get(id);
    if (!row) {
      row = {
        id,
        project_id: project,
        primary_fingerprint: null,
        status: 'unresolved',
        sequence: 0,
        resolution_id: 0,
        resolution: null,
        ignore: null,
        ignored_at: null,
        occurrences_since_ignored: 0,
        times_seen: 0,
        first_seen: null,
        rate_before_per_hour: 0,
        hour_started: null,
        occurrences_this_hour: 0,
        deleted_at: null,
      };
      this.rows.set(id, row);
    }
    this.dirty.add(row);
    return row;
  }

  created(e: GroupEvent) {
    const row = this.row(e.group_id, e.project_id);
    row.primary_fingerprint = e.primary_fingerprint ?? row.primary_fingerprint;
    row.times_seen = Math.max(row.times_seen, 1);
    row.first_seen ??= e.occurred_at;
  }

  activity(e: GroupEvent) {
    const row = this.row(e.group_id, e.project_id);
    if (e.times_seen !== undefined) row.times_seen = Math.max(row.times_seen, e.times_seen);
    if (e.first_seen) row.first_seen = e.first_seen;
  }

  /** Applies a status_changed newer than the last applied; false (nothing changed) for an older one. */
  statusChanged(e: GroupEvent): boolean {
    const existing = this.rows.get(e.group_id);
    if (e.sequence === undefined || (existing && e.sequence <= existing.sequence)) return false;
    const row = this.row(e.group_id, e.project_id);
    row.status = e.status ?? row.status;
    row.sequence = e.sequence;
    row.resolution_id = e.resolution_id ?? row.resolution_id;
    row.resolution = e.resolution ?? null;
    row.ignore = e.ignore ?? null;
    if (row.status === 'ignored') {
      // the rate before the ignore: occurrences so far over the hours since the first (at least one)
      const since = row.first_seen ? Date.parse(row.first_seen) : Date.parse(e.occurred_at);
      const hours = Math.max(1, (Date.parse(e.occurred_at) - since) / HOUR_MS);
      row.ignored_at = e.occurred_at;
      row.rate_before_per_hour = row.times_seen / hours;
      row.occurrences_since_ignored = 0;
      row.hour_started = null;
      row.occurrences_this_hour = 0;
    }
    return true;
  }

  /** An occurrence on an ignored group counts toward its ignore's limits. */
  countIgnored(row: GroupRow, at: string) {
    if (row.status !== 'ignored') return;
    this.dirty.add(row);
    row.occurrences_since_ignored += 1;
    if (!row.hour_started || Date.parse(at) - Date.parse(row.hour_started) >= HOUR_MS) {
      row.hour_started = at;
      row.occurrences_this_hour = 0;
    }
    row.occurrences_this_hour += 1;
  }

  hasProposal(row: GroupRow): boolean {
    return this.proposals.get(row.id)?.has(row.sequence) ?? false;
  }

  proposed(row: GroupRow) {
    this.markProposed(row.id, row.sequence);
  }

  private markProposed(id: number, sequence: number) {
    const set = this.proposals.get(id) ?? new Set<number>();
    set.add(sequence);
    this.proposals.set(id, set);
  }

  /**
   * Writes every changed row back, in one statement: typed arrays, not a JSON document, so any text
   * the schemas accept is stored (NUL as the text `\u0000`; resolution and ignore as `json`, as they came).
   */
  async save(tx: PoolClient) {
    if (!this.dirty.size) return;
    const rows = [...this.dirty];
    const column = <T>(pick: (r: GroupRow) => T) => rows.map(pick);
    const json = (v: unknown) => (v === null ? null : JSON.stringify(v));
    await tx.query(
      `INSERT INTO groups (id, project_id, primary_fingerprint, status, sequence, resolution_id, resolution, ignore,
         ignored_at, occurrences_since_ignored, times_seen, first_seen, rate_before_per_hour, hour_started,
         occurrences_this_hour)
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
         $7::json[], $8::json[], $9::timestamptz[], $10::bigint[], $11::bigint[], $12::timestamptz[],
         $13::float8[], $14::timestamptz[], $15::bigint[])
       ON CONFLICT (id) DO UPDATE SET
         project_id = EXCLUDED.project_id, primary_fingerprint = EXCLUDED.primary_fingerprint,
         status = EXCLUDED.status, sequence = EXCLUDED.sequence, resolution_id = EXCLUDED.resolution_id,
         resolution = EXCLUDED.resolution, ignore = EXCLUDED.ignore, ignored_at = EXCLUDED.ignored_at,
         occurrences_since_ignored = EXCLUDED.occurrences_since_ignored, times_seen = EXCLUDED.times_seen,
         first_seen = EXCLUDED.first_seen, rate_before_per_hour = EXCLUDED.rate_before_per_hour,
         hour_started = EXCLUDED.hour_started, occurrences_this_hour = EXCLUDED.occurrences_this_hour`,
      [
        column((r) => r.id),
        column((r) => r.project_id),
        column((r) => storableText(r.primary_fingerprint)),
        column((r) => r.status),
        column((r) => r.sequence),
        column((r) => r.resolution_id),
        column((r) => json(r.resolution)),
        column((r) => json(r.ignore)),
        column((r) => r.ignored_at),
        column((r) => r.occurrences_since_ignored),
        column((r) => r.times_seen),
        column((r) => r.first_seen),
        column((r) => r.rate_before_per_hour),
        column((r) => r.hour_started),
        column((r) => r.occurrences_this_hour),
      ],
    );
  }
}
