import type { EntityChange, GroupingCommand, Occurrence, StatusChange } from '@shoal/contracts';
import { storableText } from '@shoal/db';
import type { Lookup } from '@shoal/kafka-runtime';
import { environmentOf, primaryHash } from './fingerprints.js';

export type GroupingMessage = Occurrence | StatusChange | EntityChange | GroupingCommand;

/** `project:rest` references, as two parallel arrays for one `unnest` query. */
function splitRefs(refs: string[]): [number[], string[]] {
  const at = refs.map((r) => r.indexOf(':'));
  return [refs.map((r, i) => Number(r.slice(0, at[i]))), refs.map((r, i) => r.slice(at[i]! + 1))];
}

const isOccurrence = (v: GroupingMessage): v is Occurrence => 'issue_title' in v;
const isStatusChange = (v: GroupingMessage): v is StatusChange => 'new_status' in v;

const knownRows = (rows: { id: string; deleted_at: Date | null }[]) =>
  new Map(rows.map((r) => [r.id, r.deleted_at]));

/** Projects are created on first sight; only a deleted one (a tombstone) is stale. */
export const projectLookup: Lookup<GroupingMessage> = {
  entity: 'project',
  unknown: 'create',
  refs: (m) => (isOccurrence(m.value) || isStatusChange(m.value) ? m.value.project_id : undefined),
  load: async (ids, tx) =>
    knownRows(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT id::text, deleted_at FROM projects WHERE id = ANY($1::bigint[])',
          [ids],
        )
      ).rows,
    ),
};

/** Environments are created on first sight too. */
export const environmentLookup: Lookup<GroupingMessage> = {
  entity: 'environment',
  unknown: 'create',
  refs: (m) => {
    if (!isOccurrence(m.value)) return undefined;
    const env = environmentOf(m.value);
    return env === null ? undefined : `${m.value.project_id}:${env}`;
  },
  load: async (refs, tx) => {
    const [projects, names] = splitRefs(refs);
    const { rows } = await tx.query<{ i: number; deleted_at: Date | null }>(
      `SELECT r.i, e.deleted_at FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS r(project_id, name, i)
       JOIN environments e ON (e.project_id, md5(e.name)) = (r.project_id, md5(r.name)) AND e.name = r.name`,
      [projects, names.map(storableText)],
    );
    return new Map(rows.map((r) => [refs[Number(r.i) - 1]!, r.deleted_at]));
  },
};

/** Detectors must be announced: a message naming an unknown one waits for it; a deleted one is stale. */
export const detectorLookup: Lookup<GroupingMessage> = {
  entity: 'detector',
  unknown: 'announce',
  refs: (m) =>
    isOccurrence(m.value)
      ? m.value.shoal?.detector_id
      : isStatusChange(m.value)
        ? (m.value.detector_id ?? undefined)
        : undefined,
  load: async (ids, tx) =>
    knownRows(
      (
        await tx.query<{ id: string; deleted_at: Date | null }>(
          'SELECT id::text, deleted_at FROM detectors WHERE id = ANY($1::bigint[])',
          [ids],
        )
      ).rows,
    ),
};

/**
 * A status change names a fingerprint (`project:hash`) or, Shoal's own, a group id (digits). A
 * fingerprint with a live group exists; a discarded one is a tombstone (stale); one with no group
 * yet, or freed by its group's deletion, waits for its next occurrence. A group id exists while the
 * group does; a deleted group is a tombstone.
 */
export const groupLookup: Lookup<GroupingMessage> = {
  entity: 'group',
  unknown: 'announce',
  refs: (m) =>
    !isStatusChange(m.value)
      ? undefined
      : m.value.shoal?.group_id !== undefined
        ? String(m.value.shoal.group_id)
        : `${m.value.project_id}:${primaryHash(m.value)}`,
  load: async (refs, tx) => {
    const byFingerprint = refs.filter((r) => r.includes(':'));
    const byId = refs.filter((r) => !r.includes(':'));
    const [projects, hashes] = splitRefs(byFingerprint);
    const { rows } = await tx.query<{ i: number; discarded_at: Date | null }>(
      `SELECT r.i, d.discarded_at FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS r(project_id, hash, i)
       LEFT JOIN discarded_hashes d ON (d.project_id, d.hash) = (r.project_id, r.hash)
       WHERE d.hash IS NOT NULL
          OR EXISTS (SELECT 1 FROM group_hashes h WHERE (h.project_id, h.hash) = (r.project_id, r.hash))`,
      [projects, hashes],
    );
    const found = new Map(rows.map((r) => [byFingerprint[Number(r.i) - 1]!, r.discarded_at]));
    if (byId.length)
      for (const [id, deletedAt] of knownRows(
        (
          await tx.query<{ id: string; deleted_at: Date | null }>(
            'SELECT id::text, deleted_at FROM groups WHERE id = ANY($1::bigint[])',
            [byId],
          )
        ).rows,
      ))
        found.set(id, deletedAt);
    return found;
  },
};

export const lookups = [projectLookup, environmentLookup, detectorLookup, groupLookup];
export { isOccurrence, isStatusChange };
