/**
 * Regression's projection of releases, for one batch: the releases of the batch's projects (first
 * seen from `release_seen`; announced date, commits and tombstone from entity changes), as the
 * decision takes them. A deleted release stays: it keeps its place in the order.
 */
import type { PoolClient } from '@shoal/db';
import { storableText } from '@shoal/db';
import type { Release } from '@shoal/regression-rules';

interface ReleaseRow {
  project_id: number;
  version: string;
  first_seen: string | null;
  released_at: string | null;
  commits: string[] | null;
  deleted_at: string | null;
}

const iso = (v: Date | null) => (v === null ? null : v.toISOString());

export class ReleaseRows {
  private readonly seenNow = new Map<string, ReleaseRow>();
  /** `of(project)` until the project's releases change (the decision indexes the list once) */
  private readonly lists = new Map<number, Release[]>();

  private constructor(private readonly byProject: Map<number, Map<string, ReleaseRow>>) {}

  static async load(tx: PoolClient, projects: number[]): Promise<ReleaseRows> {
    const { rows } = await tx.query<{
      project_id: string;
      version: string;
      first_seen: Date | null;
      released_at: Date | null;
      commits: string[] | null;
      deleted_at: Date | null;
    }>(
      'SELECT project_id, version, first_seen, released_at, commits, deleted_at FROM releases WHERE project_id = ANY($1::bigint[])',
      [projects],
    );
    const byProject = new Map<number, Map<string, ReleaseRow>>();
    for (const r of rows) {
      const project = Number(r.project_id);
      const map = byProject.get(project) ?? new Map<string, ReleaseRow>();
      map.set(r.version, {
        project_id: project,
        version: r.version,
        first_seen: iso(r.first_seen),
        released_at: iso(r.released_at),
        commits: r.commits,
        deleted_at: iso(r.deleted_at),
      });
      byProject.set(project, map);
    }
    return new ReleaseRows(byProject);
  }

  /** A release's first occurrence in its project (the earliest time wins). */
  seen(project: number, version: string, at: string) {
    const stored = storableText(version);
    const map = this.byProject.get(project) ?? new Map<string, ReleaseRow>();
    this.byProject.set(project, map);
    const row = map.get(stored) ?? {
      project_id: project,
      version: stored,
      first_seen: null,
      released_at: null,
      commits: null,
      deleted_at: null,
    };
    if (row.first_seen === null || Date.parse(at) < Date.parse(row.first_seen)) {
      row.first_seen = at;
      this.lists.delete(project);
    }
    map.set(stored, row);
    this.seenNow.set(`${project}:${stored}`, row);
  }

  /** The project's releases as the decision takes them; added when first seen or announced, whichever first. */
  of(project: number): Release[] {
    let list = this.lists.get(project);
    if (!list) {
      list = this.build(project);
      this.lists.set(project, list);
    }
    return list;
  }

  private build(project: number): Release[] {
    return [...(this.byProject.get(project)?.values() ?? [])].flatMap((r) => {
      const times = [r.first_seen, r.released_at].filter((t): t is string => t !== null);
      if (!times.length) return [];
      const added = times.reduce((a, b) => (Date.parse(a) <= Date.parse(b) ? a : b));
      return [
        {
          version: r.version,
          date_added: added,
          ...(r.commits && { commits: r.commits }),
          ...(r.deleted_at && { deleted: true }),
        },
      ];
    });
  }

  async save(tx: PoolClient) {
    if (!this.seenNow.size) return;
    const rows = [...this.seenNow.values()];
    await tx.query(
      `INSERT INTO releases (project_id, version, first_seen)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
       ON CONFLICT (project_id, md5(version)) DO UPDATE SET
         first_seen = least(coalesce(releases.first_seen, EXCLUDED.first_seen), EXCLUDED.first_seen)`,
      [rows.map((r) => r.project_id), rows.map((r) => r.version), rows.map((r) => r.first_seen)],
    );
  }
}
