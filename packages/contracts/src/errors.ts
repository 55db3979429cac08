/**
 * Reason codes for permanent failures (DESIGN.md, "Semantics every consumer shares" 3). The
 * runtime's per-reason policy (dlq or skip) is keyed by these.
 */
export const reasonCodes = [
  'decode_error',
  'schema_invalid',
  'stale_reference',
  'unknown_reference',
  'invalid_transition',
  'processing_error',
  'parked_expired',
] as const;
export type ReasonCode = (typeof reasonCodes)[number];

export interface FieldProblem {
  /** JSON pointer to the offending field, e.g. `/fingerprint/0` or `/project_id` for a missing one. */
  path: string;
  message: string;
}

/** A message that can never be processed as it is: bad bytes or a payload its schema refuses. */
export class ContractError extends Error {
  readonly retriable = false;
  constructor(
    readonly reason: Extract<ReasonCode, 'decode_error' | 'schema_invalid'>,
    message: string,
    readonly problems: FieldProblem[] = [],
  ) {
    super(
      problems.length
        ? `${message}: ${problems.map((p) => `${p.path || '/'} ${p.message}`).join('; ')}`
        : message,
    );
    this.name = 'ContractError';
  }

  get paths(): string[] {
    return this.problems.map((p) => p.path);
  }
}
