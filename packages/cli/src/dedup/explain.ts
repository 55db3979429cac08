import { explain, type DedupSignal, type Explanation, type KeyOptions } from '@shoal/dedup-keys';

/**
 * `shoal dedup explain`'s reading of one JSON Lines case: `{"message", "component"?, "route"?,
 * "stack_frames"?}`, closed like the group event's dedup hints. A bad case is an error naming the
 * field, never a guess; a good one is explained by the same pure function dedup calls.
 */

export type CaseResult = Explanation | { error: string; field: string; line: number };

const fields = ['message', 'component', 'route', 'stack_frames'] as const;

class FieldError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

function signalOf(value: unknown): DedupSignal {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new FieldError('(line)', 'expected a JSON object such as {"message": "…"}');
  const record = value as Record<string, unknown>;
  const unknown = Object.keys(record).find((k) => !(fields as readonly string[]).includes(k));
  if (unknown !== undefined)
    throw new FieldError(unknown, `not a dedup hint (fields: ${fields.join(', ')})`);
  if (typeof record.message !== 'string') throw new FieldError('message', 'expected a string');
  for (const field of ['component', 'route'] as const)
    if (record[field] !== undefined && typeof record[field] !== 'string')
      throw new FieldError(field, 'expected a string');
  const frames = record.stack_frames;
  if (frames !== undefined && (!Array.isArray(frames) || frames.some((f) => typeof f !== 'string')))
    throw new FieldError('stack_frames', 'expected an array of strings');
  return record as DedupSignal;
}

/** One line of stdin (1-based `line`), explained or refused. */
export function explainLine(text: string, line: number, options: KeyOptions): CaseResult {
  try {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new FieldError('(line)', `not JSON: ${(error as Error).message}`);
    }
    return explain(signalOf(value), options);
  } catch (error) {
    if (!(error instanceof FieldError)) throw error;
    return { error: error.message, field: error.field, line };
  }
}
