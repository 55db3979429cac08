import type { Occurrence } from '@shoal/contracts';
import type { Message } from '@shoal/kafka-runtime';
import { environmentOf, hashOf } from './fingerprints.js';

/** An occurrence with what grouping derives from it. */
export interface Item {
  message: Message<Occurrence>;
  project: number;
  hashes: string[];
  /** `project:primary hash`: the item's group key (groupKeyOf), made once. */
  key: string;
  time: Date;
  environment: string | null;
  release: string | null;
}

/**
 * A batch's fingerprint hashes, each fingerprint hashed once (a batch of one fingerprint hashed
 * 2,000 times the same string); it lives as long as the batch, so it holds at most its fingerprints.
 */
export function batchHasher(): (fingerprint: string) => string {
  const known = new Map<string, string>();
  return (fingerprint) => {
    let hash = known.get(fingerprint);
    if (hash === undefined) known.set(fingerprint, (hash = hashOf(fingerprint)));
    return hash;
  };
}

export function itemOf(message: Message<Occurrence>, hash: (f: string) => string = hashOf): Item {
  const { value } = message;
  const hashes = value.fingerprint.map((f) => hash(f));
  return {
    message,
    project: value.project_id,
    hashes,
    key: `${value.project_id}:${hashes[0]}`,
    time: new Date(value.detection_time * 1000),
    environment: environmentOf(value),
    release: typeof value.event?.release === 'string' ? value.event.release : null,
  };
}

/** Groups are keyed by project and primary hash. */
export const groupKeyOf = (item: Item) => item.key;
