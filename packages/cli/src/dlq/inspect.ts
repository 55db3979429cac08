import { UsageError } from '../exit.js';
import { withDatabase } from '../connections.js';
import { parkedBehind, type ParkedKey } from './discard.js';
import {
  earlierDiscards,
  earlierReplays,
  type EarlierDiscard,
  type EarlierReplay,
} from './ledger.js';
import {
  headerText,
  isUnreadable,
  parseDeadLetter,
  readTopic,
  type DeadLetter,
} from './records.js';

/**
 * `shoal dlq inspect`: one dead letter whole — every header, the key, the value (the JSON of a
 * registry-framed value with its schema id, else its text, else base64), the earlier replay or
 * discard of it, if any, and the key it still parks. Reads only. An offset the topic does not hold is a UsageError naming --offset.
 */

export type ValueView =
  | { encoding: 'registry-json'; schemaId: number; json: unknown }
  | { encoding: 'utf8'; text: string }
  | { encoding: 'base64'; base64: string }
  | null;

export function valueView(value: Buffer | null): ValueView {
  if (value === null) return null;
  // Confluent wire format: magic byte 0, a 4-byte schema id, then (JSON Schema) the JSON text
  if (value.length > 5 && value[0] === 0)
    try {
      return {
        encoding: 'registry-json',
        schemaId: value.readInt32BE(1),
        json: JSON.parse(value.subarray(5).toString('utf8')),
      };
    } catch {
      // not JSON after the frame: shown as bytes below
    }
  const text = new TextDecoder('utf-8', { fatal: true });
  try {
    return { encoding: 'utf8', text: text.decode(value) };
  } catch {
    return { encoding: 'base64', base64: value.toString('base64') };
  }
}

export interface Inspected {
  dlqTopic: string;
  dlqOffset: number;
  deadLetter: DeadLetter | null;
  problem: string | null;
  headers: Record<string, string>;
  value: ValueView;
  replayedBy: EarlierReplay | null;
  discardedBy: EarlierDiscard | null;
  /** The key this dead letter still heads, parked, in its consumer's runtime tables. */
  parks: ParkedKey | null;
}

export async function inspectDeadLetter(
  request: { dlqTopic: string; offset: number },
  connections: { databaseUrl: string; brokers: string[] },
): Promise<Inspected> {
  const raws = await readTopic(connections.brokers, request.dlqTopic);
  const raw = raws.find((r) => r.dlqOffset === request.offset);
  if (!raw)
    throw new UsageError(
      `--offset: ${request.dlqTopic} holds no record at offset ${request.offset}` +
        (raws.length
          ? ` (offsets ${raws[0]!.dlqOffset} to ${raws.at(-1)!.dlqOffset})`
          : ' (empty)'),
    );
  const parsed = parseDeadLetter(raw);
  const [earlier, discarded, parks] = await withDatabase(connections.databaseUrl, (pool) =>
    Promise.all([
      earlierReplays(pool, request.dlqTopic, [request.offset]),
      earlierDiscards(pool, request.dlqTopic, [request.offset]),
      isUnreadable(parsed) ? null : parkedBehind(pool, parsed),
    ]),
  );
  const headers: Record<string, string> = {};
  for (const name of Object.keys(raw.headers)) {
    const value = headerText(raw.headers, name);
    if (value !== undefined) headers[name] = value;
  }
  return {
    dlqTopic: raw.dlqTopic,
    dlqOffset: raw.dlqOffset,
    deadLetter: isUnreadable(parsed) ? null : parsed,
    problem: isUnreadable(parsed) ? parsed.problem : null,
    headers,
    value: valueView(raw.value),
    replayedBy: earlier.get(raw.dlqOffset) ?? null,
    discardedBy: discarded.get(raw.dlqOffset) ?? null,
    parks,
  };
}
