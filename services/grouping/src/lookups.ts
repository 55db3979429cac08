import type { EntityChange, Occurrence, StatusChange } from '@shoal/contracts';
import { storableText } from '@shoal/db';
import type { Lookup } from '@shoal/kafka-runtime';
import { environmentOf, primaryHash } from './fingerprints.js';

export type GroupingMessage = Occurrence | StatusChange | EntityChange;

/** `project:rest` references, as two parallel arrays for one `unnest` query. */
function splitRefs(refs: string[]): [number[], string[]] {
  const at = refs.map((r) => r.indexOf(':'));
  return [refs.map((r, i) => Number(r.slice(0, at[i]))), refs.map((r, i) => r.slice(at[i]! + 1))];
}

const isOccurrence = (v: GroupingMessage): v is Occurrence => 'issue_title' in v;
const isStatusChange = (v: GroupingMessage): v is StatusChange => 'new_status' in v;

/** Projects are created on first sight; only a deleted one (a tombstone) is stale. */
export const projectLookup: Lookup<GroupingMessage> = {
  entity: 'project',
  refs: (m) => (isOccurrence(m.value) || isStatusChange(m.value) ? m.value.project_id : undefined),
  load: async (ids, tx) =>
    (
      await tx.query<{ id: string }>(
        `SELECT r.id::text AS id FROM unnest($1::bigint[]) AS r(id)
         WHERE NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = r.id AND p.deleted_at IS NOT NULL)`,
        [ids],
      )
    ).rows.map((r) => r.id),
};

export const environmentLookup: Lookup<GroupingMessage> = {
  entity: 'environment',
  refs: (m) => {
    if (!isOccurrence(m.value)) return undefined;
    const env = environmentOf(m.value);
    return env === null ? undefined : `${m.value.project_id}:${env}`;
  },
  load: async (refs, tx) => {
    const [projects, names] = splitRefs(refs);
    const { rows } = await tx.query<{ i: number }>(
      `SELECT r.i FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS r(project_id, name, i)
       WHERE EXISTS (SELECT 1 FROM environments e
                     WHERE (e.project_id, md5(e.name)) = (r.project_id, md5(r.name)) AND e.name = r.name
                       AND e.deleted_at IS NOT NULL)`,
      [projects, names.map(storableText)],
    );
    const deleted = new Set(rows.map((r) => Number(r.i) - 1));
    return refs.filter((_, i) => !deleted.has(i));
  },
};

/** Detectors must have been announced; an unknown or deleted one is stale. */
export const detectorLookup: Lookup<GroupingMessage> = {
  entity: 'detector',
  refs: (m) =>
    isOccurrence(m.value)
      ? m.value.shoal?.detector_id
      : isStatusChange(m.value)
        ? (m.value.detector_id ?? undefined)
        : undefined,
  load: async (ids, tx) =>
    (
      await tx.query<{ id: string }>(
        'SELECT id::text FROM detectors WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL',
        [ids],
      )
    ).rows.map((r) => r.id),
};

/** A status change names a fingerprint; with no group behind it, it is a stale reference to a group. */
export const groupLookup: Lookup<GroupingMessage> = {
  entity: 'group',
  refs: (m) =>
    isStatusChange(m.value) ? `${m.value.project_id}:${primaryHash(m.value)}` : undefined,
  load: async (refs, tx) => {
    const [projects, hashes] = splitRefs(refs);
    const { rows } = await tx.query<{ project_id: number; hash: string }>(
      'SELECT project_id, hash FROM group_hashes WHERE (project_id, hash) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))',
      [projects, hashes],
    );
    return rows.map((r) => `${r.project_id}:${r.hash}`);
  },
};

export const lookups = [projectLookup, environmentLookup, detectorLookup, groupLookup];
export { isOccurrence, isStatusChange };
