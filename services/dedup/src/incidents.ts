import type { PoolClient } from '@shoal/db';
import { TransientError } from '@shoal/kafka-runtime';

/**
 * Dedup's writes to incidents, members and keys, each through the caller's transaction (the
 * runtime's). Linking by key holds the key's row lock, so two groups of one key are never linked
 * apart by concurrent partitions; every change of membership re-chooses the canonical group.
 */

/** The incident's oldest live member becomes its canonical group (null when none is left). */
export async function rechooseCanonical(
  tx: PoolClient,
  incidentId: number,
): Promise<number | null> {
  const { rows } = await tx.query<{ canonical: string | null }>(
    `UPDATE incidents SET canonical_group_id = (
       SELECT group_id FROM members WHERE incident_id = $1 AND deleted_at IS NULL
       ORDER BY created_at NULLS LAST, group_id LIMIT 1)
     WHERE id = $1 RETURNING canonical_group_id::text AS canonical`,
    [incidentId],
  );
  const canonical = rows[0]?.canonical ?? null;
  return canonical === null ? null : Number(canonical);
}

async function newIncident(tx: PoolClient, projectId: number, createdAt: string): Promise<number> {
  const { rows } = await tx.query<{ id: string }>(
    'INSERT INTO incidents (project_id, created_at) VALUES ($1, $2) RETURNING id::text',
    [projectId, createdAt],
  );
  return Number(rows[0]!.id);
}

export interface NewMember {
  groupId: number;
  projectId: number;
  key: string;
  createdAt: string;
}

export interface Linked extends NewMember {
  incidentId: number;
  reason: 'new_incident' | 'dedup_key';
  /** The incident's canonical group right after this member joined. */
  canonicalGroupId: number;
}

/** An incident while a batch is linked: its span and canonical group. */
interface Span {
  lo: number | null;
  hi: number | null;
  canonical: { groupId: number; at: number } | null;
}

const older = (a: { groupId: number; at: number }, b: { groupId: number; at: number }) =>
  a.at < b.at || (a.at === b.at && a.groupId < b.groupId);

/**
 * Links new groups (their member rows already written, with key and creation time), in the order
 * given, as one at a time would: a group joins the incident its key points at when it was created
 * within `windowMs` of that incident's span (its live members' earliest creation to their latest
 * sighting, both ends included); else it starts a new incident, which the key then points at. The
 * keys' rows are locked in one statement, in key order (so batches never deadlock on them), then
 * read with their spans and canonical groups; those are carried forward here, and written in a few
 * statements a batch.
 */
export async function linkByKey(
  tx: PoolClient,
  members: NewMember[],
  windowMs: number,
): Promise<Linked[]> {
  if (!members.length) return [];
  const keyOf = (m: { projectId: number; key: string }) => `${m.projectId}:${m.key}`;
  const keys = [...new Map(members.map((m) => [keyOf(m), m])).values()].sort(
    (a, b) => a.projectId - b.projectId || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
  );
  const keyArgs = [keys.map((k) => k.projectId), keys.map((k) => k.key)];
  await tx.query(
    `INSERT INTO dedup_keys (project_id, dedup_key)
     SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING`,
    keyArgs,
  );
  // the keys are locked first, and read by a statement of their own: a statement that waited for a
  // lock reads the other tables as they were before the batch it waited for committed (READ
  // COMMITTED re-reads only the locked row), so spans and canonical groups would be stale
  await tx.query(
    `SELECT 1 FROM dedup_keys k
     JOIN unnest($1::bigint[], $2::text[]) AS r(project_id, dedup_key) USING (project_id, dedup_key)
     ORDER BY k.project_id, k.dedup_key
     FOR UPDATE OF k`,
    keyArgs,
  );
  const { rows } = await tx.query<{
    project_id: string;
    dedup_key: string;
    incident_id: string | null;
    lo: Date | null;
    hi: Date | null;
    canonical: string | null;
    canonical_at: Date | null;
  }>(
    `SELECT k.project_id::text, k.dedup_key, k.incident_id::text, s.lo, s.hi,
            c.group_id::text AS canonical, c.created_at AS canonical_at
     FROM dedup_keys k
     JOIN unnest($1::bigint[], $2::text[]) AS r(project_id, dedup_key) USING (project_id, dedup_key)
     LEFT JOIN LATERAL (
       SELECT min(created_at) AS lo, max(greatest(created_at, last_seen)) AS hi
       FROM members WHERE incident_id = k.incident_id AND deleted_at IS NULL
     ) s ON true
     LEFT JOIN incidents i ON i.id = k.incident_id
     LEFT JOIN members c ON c.group_id = i.canonical_group_id AND c.deleted_at IS NULL
     ORDER BY k.project_id, k.dedup_key`,
    keyArgs,
  );
  // which incident each key points at, and each incident's span (two keys may share one: a merge)
  const pointer = new Map<string, number | null>();
  const spans = new Map<number, Span>();
  for (const r of rows) {
    const incident = r.incident_id === null ? null : Number(r.incident_id);
    pointer.set(`${r.project_id}:${r.dedup_key}`, incident);
    if (incident !== null)
      spans.set(incident, {
        lo: r.lo?.getTime() ?? null,
        hi: r.hi?.getTime() ?? null,
        canonical:
          r.canonical === null
            ? null
            : { groupId: Number(r.canonical), at: r.canonical_at!.getTime() },
      });
  }

  // new incidents get stand-in ids (-1, -2, …) until their real ones are drawn below
  const created: { standIn: number; projectId: number; createdAt: string }[] = [];
  const repointed = new Set<string>();
  const linked: Linked[] = [];
  for (const member of members) {
    const at = Date.parse(member.createdAt);
    const self = { groupId: member.groupId, at };
    let incident = pointer.get(keyOf(member)) ?? null;
    const span = incident === null ? undefined : spans.get(incident);
    const joins =
      span !== undefined &&
      span.lo !== null &&
      span.hi !== null &&
      at >= span.lo - windowMs &&
      at <= span.hi + windowMs;
    if (joins) {
      span.lo = Math.min(span.lo!, at);
      span.hi = Math.max(span.hi!, at);
      if (!span.canonical || older(self, span.canonical)) span.canonical = self;
    } else {
      incident = -(created.length + 1);
      created.push({ standIn: incident, projectId: member.projectId, createdAt: member.createdAt });
      spans.set(incident, { lo: at, hi: at, canonical: self });
      pointer.set(keyOf(member), incident);
      repointed.add(keyOf(member));
    }
    linked.push({
      ...member,
      incidentId: incident!,
      reason: joins ? 'dedup_key' : 'new_incident',
      canonicalGroupId: spans.get(incident!)!.canonical!.groupId,
    });
  }

  const real = new Map<number, number>();
  if (created.length) {
    const ids = await tx.query<{ id: string }>(
      `SELECT nextval(pg_get_serial_sequence('incidents', 'id'))::text AS id
       FROM generate_series(1, $1)`,
      [created.length],
    );
    created.forEach((c, i) => real.set(c.standIn, Number(ids.rows[i]!.id)));
    await tx.query(
      `INSERT INTO incidents (id, project_id, created_at)
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[])`,
      [
        created.map((c) => real.get(c.standIn)),
        created.map((c) => c.projectId),
        created.map((c) => c.createdAt),
      ],
    );
  }
  const idOf = (id: number) => real.get(id) ?? id;
  for (const l of linked) l.incidentId = idOf(l.incidentId);
  await tx.query(
    `UPDATE members m SET incident_id = u.incident_id
     FROM unnest($1::bigint[], $2::bigint[]) AS u(group_id, incident_id) WHERE m.group_id = u.group_id`,
    [linked.map((l) => l.groupId), linked.map((l) => l.incidentId)],
  );
  if (repointed.size) {
    const moved = [...repointed];
    await tx.query(
      `UPDATE dedup_keys k SET incident_id = u.incident_id
       FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS u(project_id, dedup_key, incident_id)
       WHERE (k.project_id, k.dedup_key) = (u.project_id, u.dedup_key)`,
      [
        moved.map((k) => Number(k.slice(0, k.indexOf(':')))),
        moved.map((k) => k.slice(k.indexOf(':') + 1)),
        moved.map((k) => idOf(pointer.get(k)!)),
      ],
    );
  }
  const touched = [...new Set(linked.map((l) => l.incidentId))];
  const canonicalOf = new Map([...spans].map(([id, span]) => [idOf(id), span.canonical!.groupId]));
  await tx.query(
    `UPDATE incidents i SET canonical_group_id = u.canonical
     FROM unnest($1::bigint[], $2::bigint[]) AS u(id, canonical) WHERE i.id = u.id`,
    [touched, touched.map((id) => canonicalOf.get(id))],
  );
  return linked;
}

/**
 * A deleted group: a tombstone from now on, out of its incident (whose canonical is re-chosen).
 * Returns the incident it left, if any.
 */
export async function deleteMember(
  tx: PoolClient,
  group: { groupId: number; projectId: number | null; deletedAt: string },
): Promise<{ incidentId: number; projectId: number; canonicalGroupId: number | null } | null> {
  // the row first (a batch creating the group at this instant is waited for), then its incident
  await tx.query(
    'INSERT INTO members (group_id, project_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    [group.groupId, group.projectId],
  );
  const before = await tx.query<{ incident_id: string | null }>(
    'SELECT incident_id::text FROM members WHERE group_id = $1 FOR UPDATE',
    [group.groupId],
  );
  const { rows } = await tx.query<{ project_id: string | null }>(
    `UPDATE members SET deleted_at = coalesce(deleted_at, $2), incident_id = NULL
     WHERE group_id = $1 RETURNING project_id::text`,
    [group.groupId, group.deletedAt],
  );
  const left = before.rows[0]?.incident_id ?? null;
  if (left === null) return null;
  return {
    incidentId: Number(left),
    projectId: Number(rows[0]!.project_id),
    canonicalGroupId: await rechooseCanonical(tx, Number(left)),
  };
}

/** A group a project's deletion took out of its incident. */
export interface DetachedMember {
  groupId: number;
  incidentId: number;
}

/**
 * A deleted project (DESIGN.md semantics 4, deletions cascade): a tombstone in `projects`; its live
 * members become tombstones (their groups went with it) and leave their incidents; its incidents
 * keep their rows, detached (no canonical group, `deleted_at`); its keys are removed, so a restored
 * project's groups start incidents afresh. A project deleted again changes nothing. Returns the
 * members that left an incident, by incident and group.
 */
export async function deleteProject(
  tx: PoolClient,
  projectId: number,
  deletedAt: string,
): Promise<DetachedMember[]> {
  await tx.query(
    `INSERT INTO projects (id, deleted_at) VALUES ($1, $2)
     ON CONFLICT (id) DO UPDATE SET deleted_at = coalesce(projects.deleted_at, EXCLUDED.deleted_at)`,
    [projectId, deletedAt],
  );
  // the joined row is the member as it was, so the incident it left can be returned
  const { rows } = await tx.query<{ group_id: string; incident_id: string | null }>(
    `UPDATE members m SET deleted_at = $2, incident_id = NULL
     FROM members was WHERE was.group_id = m.group_id AND m.project_id = $1 AND m.deleted_at IS NULL
     RETURNING m.group_id::text, was.incident_id::text`,
    [projectId, deletedAt],
  );
  await tx.query('DELETE FROM dedup_keys WHERE project_id = $1', [projectId]);
  await tx.query(
    `UPDATE incidents SET canonical_group_id = NULL, deleted_at = coalesce(deleted_at, $2)
     WHERE project_id = $1`,
    [projectId, deletedAt],
  );
  return rows
    .filter((r) => r.incident_id !== null)
    .map((r) => ({ groupId: Number(r.group_id), incidentId: Number(r.incident_id) }))
    .sort((a, b) => a.incidentId - b.incidentId || a.groupId - b.groupId);
}

/**
 * Makes the batch's projects known (first sight) and share-locks them, in id order: a project's
 * deletion locks its row, so it waits for a batch adding to the project and its cascade then sees
 * that batch's groups. One deleted since the batch's lookups (the lock re-reads the row): the batch
 * is retried, and its lookups then find the tombstone.
 */
export async function lockLiveProjects(tx: PoolClient, projectIds: number[]): Promise<void> {
  if (!projectIds.length) return;
  const ids = [...new Set(projectIds)].sort((a, b) => a - b);
  await tx.query(
    'INSERT INTO projects (id) SELECT unnest($1::bigint[]) ORDER BY 1 ON CONFLICT DO NOTHING',
    [ids],
  );
  const deleted = await lockProjects(tx, ids);
  const gone = [...deleted].find(([, at]) => at !== null);
  if (gone)
    throw new TransientError(
      `project ${gone[0]} was deleted while this batch added to it; retrying, its lookups find the tombstone`,
    );
}

/**
 * Share-locks the projects named, in one order for every caller (`ORDER BY id` names the selected
 * text, so '10' before '2'); each one's deletion time (null: live).
 */
async function lockProjects(tx: PoolClient, ids: number[]): Promise<Map<number, Date | null>> {
  const { rows } = await tx.query<{ id: string; deleted_at: Date | null }>(
    'SELECT id::text, deleted_at FROM projects WHERE id = ANY($1::bigint[]) ORDER BY id FOR SHARE',
    [ids],
  );
  return new Map(rows.map((r) => [Number(r.id), r.deleted_at]));
}

/**
 * A project announced (`created`) or `restored`: known and live from now on (held group events of
 * it are re-driven under `SHOAL_REFERENCE_PROJECT=announce`); what a deletion detached stays so.
 */
export async function announceProject(tx: PoolClient, projectId: number): Promise<void> {
  await tx.query(
    'INSERT INTO projects (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET deleted_at = NULL',
    [projectId],
  );
}

export interface IncidentRow {
  id: number;
  projectId: number;
  mergedInto: number | null;
  /** When its project's deletion was seen (null: the project is live). */
  projectDeletedAt: Date | null;
}

/**
 * The incidents named, locked for update in one order (the text of their ids, as selected: so two
 * commands never deadlock), after their
 * projects are share-locked (as a group batch does, so a command and a project's deletion never
 * deadlock, and the project's deletion time is read under its lock).
 */
export async function lockIncidents(
  tx: PoolClient,
  ids: number[],
): Promise<Map<number, IncidentRow>> {
  const { rows: projects } = await tx.query<{ project_id: string }>(
    'SELECT DISTINCT project_id::text FROM incidents WHERE id = ANY($1::bigint[])',
    [ids],
  );
  const deletedAt = await lockProjects(
    tx,
    projects.map((p) => Number(p.project_id)).sort((a, b) => a - b),
  );
  const { rows } = await tx.query<{ id: string; project_id: string; merged_into: string | null }>(
    `SELECT id::text, project_id::text, merged_into::text FROM incidents
     WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`,
    [ids],
  );
  return new Map(
    rows.map((r) => [
      Number(r.id),
      {
        id: Number(r.id),
        projectId: Number(r.project_id),
        mergedInto: r.merged_into === null ? null : Number(r.merged_into),
        projectDeletedAt: deletedAt.get(Number(r.project_id)) ?? null,
      },
    ]),
  );
}

/** Moves every member and key of `from` to `into`; `from` is left empty, pointing at `into`. */
export async function mergeIncidents(
  tx: PoolClient,
  into: number,
  from: number,
): Promise<{ canonicalGroupId: number | null; members: number[] }> {
  await tx.query('UPDATE members SET incident_id = $1 WHERE incident_id = $2', [into, from]);
  await tx.query('UPDATE dedup_keys SET incident_id = $1 WHERE incident_id = $2', [into, from]);
  await tx.query('UPDATE incidents SET merged_into = $1, canonical_group_id = NULL WHERE id = $2', [
    into,
    from,
  ]);
  const canonicalGroupId = await rechooseCanonical(tx, into);
  const { rows } = await tx.query<{ group_id: string }>(
    `SELECT group_id::text FROM members WHERE incident_id = $1 AND deleted_at IS NULL
     ORDER BY created_at NULLS LAST, group_id`,
    [into],
  );
  return { canonicalGroupId, members: rows.map((r) => Number(r.group_id)) };
}

/** The live member `groupId` of `incidentId`, and how many live members that incident has. */
export async function memberOf(
  tx: PoolClient,
  incidentId: number,
  groupId: number,
): Promise<{ isMember: boolean; members: number }> {
  const { rows } = await tx.query<{ is_member: boolean; members: number }>(
    `SELECT coalesce(bool_or(group_id = $2), false) AS is_member, count(*)::int AS members
     FROM members WHERE incident_id = $1 AND deleted_at IS NULL`,
    [incidentId, groupId],
  );
  return { isMember: rows[0]!.is_member, members: rows[0]!.members };
}

/**
 * Splits `groupId` out of `incidentId` into a new incident of its own, for good (`split_at`: its
 * key never links it again). Returns the new incident and the old one's canonical group.
 */
export async function splitMember(
  tx: PoolClient,
  incident: IncidentRow,
  groupId: number,
  at: string,
): Promise<{ newIncidentId: number; oldCanonicalGroupId: number | null }> {
  const newIncidentId = await newIncident(tx, incident.projectId, at);
  await tx.query('UPDATE members SET incident_id = $2, split_at = $3 WHERE group_id = $1', [
    groupId,
    newIncidentId,
    at,
  ]);
  await rechooseCanonical(tx, newIncidentId);
  return { newIncidentId, oldCanonicalGroupId: await rechooseCanonical(tx, incident.id) };
}
