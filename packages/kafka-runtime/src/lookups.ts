import type { PoolClient } from '@shoal/db';
import { StaleReferenceError, type EntityKind } from './errors.js';
import type { Message } from './message.js';

/**
 * An entity kind a service's messages reference. The runtime collects the ids of every message in
 * a batch and calls `load` once per kind per batch (never once per message).
 */
export interface Lookup<T> {
  entity: EntityKind;
  /** The ids of this kind one message references (none: undefined or an empty list). */
  refs(message: Message<T>): string | number | (string | number)[] | undefined | null;
  /** One query: which of `ids` exist. Ids not returned are stale references. */
  load(ids: string[], tx: PoolClient): Promise<Iterable<string>>;
}

export async function findStaleReferences<T>(
  messages: Message<T>[],
  lookups: Lookup<T>[],
  tx: PoolClient,
): Promise<Map<Message<T>, StaleReferenceError>> {
  const stale = new Map<Message<T>, StaleReferenceError>();
  for (const lookup of lookups) {
    const refsByMessage = messages.map((m) => {
      const refs = lookup.refs(m);
      return refs === undefined || refs === null
        ? []
        : (Array.isArray(refs) ? refs : [refs]).map(String);
    });
    const ids = [...new Set(refsByMessage.flat())];
    if (ids.length === 0) continue;
    const existing = new Set(await lookup.load(ids, tx));
    messages.forEach((m, i) => {
      const missing = refsByMessage[i]!.find((id) => !existing.has(id));
      if (missing !== undefined && !stale.has(m))
        stale.set(m, new StaleReferenceError(lookup.entity, missing, m.offset));
    });
  }
  return stale;
}
