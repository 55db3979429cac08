import { createHash } from 'node:crypto';
import { normaliseFrame, normaliseMessage } from './normalise.js';

/**
 * A group's signal as normalised parts, and its dedup key: the SHA-256 of the parts a project
 * counts. Pure: the same signal and key parts give the same key in the service and in
 * `shoal dedup explain`.
 */

/** A group's dedup hints, as `group_created` carries them. */
export interface DedupSignal {
  message?: string | undefined;
  component?: string | undefined;
  route?: string | undefined;
  stack_frames?: readonly string[] | undefined;
}

export const KEY_PARTS = ['message', 'stack_frames', 'component', 'route'] as const;
export type KeyPart = (typeof KEY_PARTS)[number];

export interface NormalisedParts {
  message: string;
  stack_frames: string[];
  component: string;
  route: string;
}

export interface KeyOptions {
  /** Which normalised parts the key hashes, in any order (default: all four). */
  parts: readonly KeyPart[];
  /** How many of the top (innermost) in-app frames count (default 3). */
  frames: number;
}

export const DEFAULT_KEY_OPTIONS: KeyOptions = { parts: KEY_PARTS, frames: 3 };

/** Every part of the signal normalised; frames cut to the top `frames`, line numbers dropped. */
export function normaliseSignal(
  signal: DedupSignal,
  frames = DEFAULT_KEY_OPTIONS.frames,
): NormalisedParts {
  return {
    message: normaliseMessage(signal.message ?? ''),
    stack_frames: (signal.stack_frames ?? []).slice(0, frames).map(normaliseFrame),
    component: normaliseMessage(signal.component ?? ''),
    route: normaliseMessage(signal.route ?? ''),
  };
}

const isEmpty = (value: string | string[]) => value.length === 0;

/**
 * The dedup key of normalised parts under `parts` (32 hex characters), or null when every counted
 * part is empty: a group with nothing to compare is never linked by key.
 */
export function dedupKeyOf(parts: NormalisedParts, counted: readonly KeyPart[]): string | null {
  const chosen = KEY_PARTS.filter((p) => counted.includes(p));
  if (chosen.every((p) => isEmpty(parts[p]))) return null;
  const canonical = JSON.stringify(chosen.map((p) => [p, parts[p]]));
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

export interface Explanation {
  normalised: string;
  key: string | null;
  parts: NormalisedParts;
}

/** What dedup makes of one signal: the normalised message, the key and every normalised part. */
export function explain(
  signal: DedupSignal,
  options: KeyOptions = DEFAULT_KEY_OPTIONS,
): Explanation {
  const parts = normaliseSignal(signal, options.frames);
  return { normalised: parts.message, key: dedupKeyOf(parts, options.parts), parts };
}

/**
 * Key options from text: `message,route` (the parts) or with a frame count,
 * `message,stack_frames:5`. Throws naming the unknown part.
 */
export function parseKeyOptions(text: string): KeyOptions {
  let frames = DEFAULT_KEY_OPTIONS.frames;
  const parts = text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((entry) => {
      const [name, count] = entry.split(':');
      if (!KEY_PARTS.includes(name as KeyPart)) {
        throw new Error(`unknown dedup key part "${name}" (parts: ${KEY_PARTS.join(', ')})`);
      }
      if (count !== undefined) {
        if (name !== 'stack_frames' || !/^[1-9]\d{0,2}$/.test(count)) {
          throw new Error(`"${entry}": only stack_frames takes a count, 1 to 999`);
        }
        frames = Number(count);
      }
      return name as KeyPart;
    });
  if (parts.length === 0) throw new Error('no dedup key parts given');
  return { parts, frames };
}
