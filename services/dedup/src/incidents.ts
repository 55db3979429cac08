import type { PoolClient } from '@shoal/db';

/**
 * Dedup's writes to incidents, members and keys, each through the caller's transaction (the
 * runtime's). Linking by key holds the key's row lock, so two groups of one key are never linked
 * apart by concurrent partitions; every change of membership re-chooses the canonical group.
 */

export interface LinkResult {
  incidentId: number;
  reason: 'new_incident' | 'dedup_key';
  canonicalGroupId: number | null;
}

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

/**
 * Links a new group (its member row already written, with its key and creation time) to the
 * incident of its key when the group was created within `windowMs` of that incident's span (its
 * live members' earliest creation to their latest sighting, both ends included); else to a new
 * incident, which becomes the key's.
 */
export async function linkByKey(
  tx: PoolClient,
  member: { groupId: number; projectId: number; key: string; createdAt: string },
  windowMs: number,
): Promise<LinkResult> {
  await tx.query(
    'INSERT INTO dedup_keys (project_id, dedup_key) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    [member.projectId, member.key],
  );
  const { rows } = await tx.query<{ incident_id: string | null; within: boolean | null }>(
    `SELECT k.incident_id::text,
            $3::timestamptz BETWEEN s.lo - make_interval(secs => $4::float8 / 1000)
                                AND s.hi + make_interval(secs => $4::float8 / 1000) AS within
     FROM dedup_keys k
     LEFT JOIN LATERAL (
       SELECT min(created_at) AS lo, max(greatest(created_at, last_seen)) AS hi
       FROM members WHERE incident_id = k.incident_id AND deleted_at IS NULL AND group_id <> $5
     ) s ON true
     WHERE (k.project_id, k.dedup_key) = ($1, $2)
     FOR UPDATE OF k`,
    [member.projectId, member.key, member.createdAt, windowMs, member.groupId],
  );
  const current = rows[0]!;
  const joins = current.incident_id !== null && current.within === true;
  const incidentId = joins
    ? Number(current.incident_id)
    : await newIncident(tx, member.projectId, member.createdAt);
  await tx.query('UPDATE members SET incident_id = $2 WHERE group_id = $1', [
    member.groupId,
    incidentId,
  ]);
  if (!joins)
    await tx.query(
      'UPDATE dedup_keys SET incident_id = $3 WHERE (project_id, dedup_key) = ($1, $2)',
      [member.projectId, member.key, incidentId],
    );
  return {
    incidentId,
    reason: joins ? 'dedup_key' : 'new_incident',
    canonicalGroupId: await rechooseCanonical(tx, incidentId),
  };
}

/**
 * A deleted group: a tombstone from now on, out of its incident (whose canonical is re-chosen).
 * Returns the incident it left, if any.
 */
export async function deleteMember(
  tx: PoolClient,
  group: { groupId: number; projectId: number | null; deletedAt: string },
): Promise<{ incidentId: number; projectId: number; canonicalGroupId: number | null } | null> {
  const before = await tx.query<{ incident_id: string | null }>(
    'SELECT incident_id::text FROM members WHERE group_id = $1 FOR UPDATE',
    [group.groupId],
  );
  const { rows } = await tx.query<{ project_id: string | null }>(
    `INSERT INTO members (group_id, project_id, deleted_at) VALUES ($1, $2, $3)
     ON CONFLICT (group_id) DO UPDATE
       SET deleted_at = coalesce(members.deleted_at, EXCLUDED.deleted_at), incident_id = NULL
     RETURNING project_id::text`,
    [group.groupId, group.projectId, group.deletedAt],
  );
  const left = before.rows[0]?.incident_id ?? null;
  if (left === null) return null;
  return {
    incidentId: Number(left),
    projectId: Number(rows[0]!.project_id),
    canonicalGroupId: await rechooseCanonical(tx, Number(left)),
  };
}

export interface IncidentRow {
  id: number;
  projectId: number;
  mergedInto: number | null;
}

/** The incidents named, locked for update in id order (so two commands never deadlock). */
export async function lockIncidents(
  tx: PoolClient,
  ids: number[],
): Promise<Map<number, IncidentRow>> {
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
