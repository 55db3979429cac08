import type { Occurrence } from '@shoal/contracts';
import type { Message } from '@shoal/kafka-runtime';
import { environmentOf, hashOf } from './fingerprints.js';

/** An occurrence with what grouping derives from it. */
export interface Item {
  message: Message<Occurrence>;
  project: number;
  hashes: string[];
  time: Date;
  environment: string | null;
  release: string | null;
}

export function itemOf(message: Message<Occurrence>): Item {
  const { value } = message;
  return {
    message,
    project: value.project_id,
    hashes: value.fingerprint.map(hashOf),
    time: new Date(value.detection_time * 1000),
    environment: environmentOf(value),
    release: typeof value.event?.release === 'string' ? value.event.release : null,
  };
}

/** Groups are keyed by project and primary hash. */
export const groupKeyOf = (item: Item) => `${item.project}:${item.hashes[0]}`;
