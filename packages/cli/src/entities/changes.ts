import { randomUUID } from 'node:crypto';
import { problemsOf, type EntityChange } from '@shoal/contracts';

/**
 * The `shoal.entity-changes.v1` records `shoal entities <verb>` publishes, built and validated
 * here before anything is sent: the verb's change, the kind and id (a whole number from 1 for
 * detectors, groups and projects, as the consumers read them; environments and releases need
 * their project), the actor, and the record checked against the topic's schema in `schemas/`.
 * A bad case is a problem naming the field, never thrown, so a `--file` run reports each bad line
 * and publishes the rest. Each record is keyed `<kind>:<id>`, so one entity's changes stay in order.
 */

export const entityKinds = ['detector', 'group', 'project', 'environment', 'release'] as const;
export type EntityKind = (typeof entityKinds)[number];

export const verbChanges = {
  announce: 'created',
  delete: 'deleted',
  restore: 'restored',
  discard: 'discarded',
} as const satisfies Record<string, EntityChange['change']>;
export type Verb = keyof typeof verbChanges;

const numericKinds: readonly string[] = ['detector', 'group', 'project'];
const projectKinds: readonly string[] = ['environment', 'release'];

/** One case: what the arguments say, or one line of `--file`. */
export interface EntityCase {
  kind: string;
  id: string;
  project_id?: number;
  name?: string;
  released_at?: string;
  commits?: string[];
}

export type Built = { ok: true; key: string; value: EntityChange } | { ok: false; problem: string };

export function buildChange(verb: Verb, c: EntityCase, actor: string): Built {
  const fail = (field: string, problem: string): Built => ({
    ok: false,
    problem: `${field}: ${problem}`,
  });
  if (!(entityKinds as readonly string[]).includes(c.kind))
    return fail('kind', `expected one of ${entityKinds.join(', ')}, got ${JSON.stringify(c.kind)}`);
  if (
    numericKinds.includes(c.kind) &&
    !(/^\d{1,16}$/.test(c.id) && Number.isSafeInteger(Number(c.id)) && Number(c.id) >= 1)
  )
    return fail('id', `a ${c.kind} id is a whole number from 1, got ${JSON.stringify(c.id)}`);
  if (projectKinds.includes(c.kind) && c.project_id === undefined)
    return fail('project_id', `a ${c.kind} belongs to a project: give its id`);
  if (verb === 'discard' && c.kind !== 'group')
    return fail('kind', `only a group is discarded (its fingerprints tombstoned); use delete`);
  const value = {
    event_id: randomUUID(),
    entity_kind: c.kind,
    entity_id: c.id,
    change: verbChanges[verb],
    occurred_at: new Date().toISOString(),
    actor,
    ...(c.project_id !== undefined && { project_id: c.project_id }),
    ...(c.name !== undefined && { name: c.name }),
    ...(c.released_at !== undefined && { released_at: c.released_at }),
    ...(c.commits !== undefined && { commits: c.commits }),
  };
  const problems = problemsOf('entityChanges', value);
  if (problems.length)
    return { ok: false, problem: problems.map((p) => `${p.path} ${p.message}`).join('; ') };
  return { ok: true, key: `${c.kind}:${c.id}`, value: value as EntityChange };
}

const caseFields = ['kind', 'id', 'project_id', 'name', 'released_at', 'commits'];

/**
 * One JSON Lines case: `{"kind": "detector", "id": "77", "project_id": 1}` (ids may be numbers).
 * Unknown fields are problems, so a typo is not published without the field it meant.
 */
export function parseCaseLine(line: string): EntityCase | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { problem: 'not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return { problem: 'expected an object such as {"kind": "detector", "id": "77"}' };
  const record = parsed as Record<string, unknown>;
  const unknown = Object.keys(record).filter((k) => !caseFields.includes(k));
  if (unknown.length) return { problem: `${unknown[0]}: not a field (${caseFields.join(', ')})` };
  if (typeof record.kind !== 'string') return { problem: 'kind: required, a string' };
  if (typeof record.id !== 'string' && typeof record.id !== 'number')
    return { problem: 'id: required, a string or a number' };
  return { ...(record as unknown as EntityCase), id: String(record.id) };
}
