import type { PoolClient } from '@shoal/db';
import {
  StaleReferenceError,
  UnknownReferenceError,
  type EntityKind,
  type PermanentError,
} from './errors.js';
import type { Message } from './message.js';
import type { ReferenceRules, UnknownMode } from './policy.js';

/**
 * Deleted is not the same as not yet known (DESIGN.md semantics 7). An entity kind a service's
 * messages reference, declared by the service (the runtime knows none). The runtime collects the ids
 * of every message in a batch and calls `load` once per kind per batch (never once per message).
 */
export interface Lookup<T> {
  entity: EntityKind;
  /**
   * What an id never heard of means, unless `SHOAL_REFERENCE_<KIND>` says otherwise: `create`, it is
   * made on first sight (by the handler) and the message is applied; `announce`, it must be announced
   * first: the message is held until it is, or dead-lettered `unknown_reference` past the deadline.
   */
  unknown: UnknownMode;
  /** The ids of this kind one message references (none: undefined or an empty list). */
  refs(message: Message<T>): string | number | (string | number)[] | undefined | null;
  /**
   * One query: what is known of `ids`, each known id mapped to null (it exists) or the time its
   * deletion was seen (a tombstone). An id not in the map was never heard of.
   */
  load(ids: string[], tx: PoolClient): Promise<Map<string, Date | null>>;
}

/** A message waiting for an entity to be announced. */
export interface Hold {
  entity: EntityKind;
  id: string;
  /** When the message was first held (a re-driven message keeps it). */
  since: Date;
}

export interface ReferenceCheck<T> {
  /** Deleted entities (`stale_reference`), and unknown ones held past their deadline (`unknown_reference`). */
  failed: Map<Message<T>, PermanentError>;
  /** Unknown entities of an `announce` kind, within the deadline. */
  held: Map<Message<T>, Hold>;
}

export const modeOf = (lookup: Lookup<unknown>, rules: ReferenceRules): UnknownMode =>
  rules.modeByEntity[lookup.entity] ?? lookup.unknown;

export const holdDeadlineMs = (entity: EntityKind, rules: ReferenceRules): number =>
  rules.holdDeadlineMsByEntity[entity] ?? rules.holdDeadlineMs;

/**
 * Each message's references, one query per kind: a deleted one fails the message (the first found,
 * by lookup order); an unknown one of an `announce` kind holds it, or fails it as `unknown_reference`
 * once it has been held (`heldSince`) past the kind's deadline.
 */
export async function checkReferences<T>(
  messages: Message<T>[],
  lookups: Lookup<T>[],
  rules: ReferenceRules,
  tx: PoolClient,
  now = new Date(),
): Promise<ReferenceCheck<T>> {
  const result: ReferenceCheck<T> = { failed: new Map(), held: new Map() };
  for (const lookup of lookups) {
    // a message's one reference as a string, several as a list: no array per message for the usual one
    const refsByMessage: (string | string[] | undefined)[] = new Array(messages.length);
    const unique = new Set<string>();
    messages.forEach((m, i) => {
      const refs = lookup.refs(m);
      if (refs === undefined || refs === null) return;
      if (Array.isArray(refs)) {
        const list = refs.map(String);
        for (const id of list) unique.add(id);
        refsByMessage[i] = list;
      } else unique.add((refsByMessage[i] = String(refs)));
    });
    if (unique.size === 0) continue;
    const known = await lookup.load([...unique], tx);
    const announce = modeOf(lookup as Lookup<unknown>, rules) === 'announce';
    messages.forEach((m, i) => {
      if (result.failed.has(m)) return;
      const refs = refsByMessage[i];
      if (refs === undefined) return;
      const one = typeof refs === 'string';
      const deleted = one ? (known.get(refs) ? refs : undefined) : refs.find((id) => known.get(id));
      if (deleted !== undefined) {
        result.held.delete(m);
        result.failed.set(
          m,
          new StaleReferenceError(lookup.entity, deleted, m.offset, known.get(deleted)!),
        );
        return;
      }
      const unknown = !announce
        ? undefined
        : one
          ? known.has(refs)
            ? undefined
            : refs
          : refs.find((id) => !known.has(id));
      if (unknown === undefined || result.held.has(m)) return;
      const since = m.heldSince ?? now;
      const waited = now.getTime() - since.getTime();
      if (m.heldSince && waited >= holdDeadlineMs(lookup.entity, rules))
        result.failed.set(m, new UnknownReferenceError(lookup.entity, unknown, waited, m.offset));
      else result.held.set(m, { entity: lookup.entity, id: unknown, since });
    });
  }
  return result;
}
