import { ContractError, type ReasonCode } from '@shoal/contracts';

/**
 * The one place that decides whether a failure is transient (retry in place: never dead-letter,
 * never skip, never advance) or permanent (its reason code goes to the per-reason policy).
 */

export const entityKinds = ['detector', 'group', 'project', 'environment'] as const;
export type EntityKind = (typeof entityKinds)[number];

/** A permanent failure of one message; handlers throw these (or a subclass) to name the reason. */
export class PermanentError extends Error {
  readonly retriable = false;
  constructor(
    readonly reason: ReasonCode,
    message: string,
    /** The offset of the message it belongs to, when the handler knows it (saves re-running the batch). */
    readonly offset?: number,
    readonly entity?: EntityKind,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class StaleReferenceError extends PermanentError {
  constructor(entity: EntityKind, id: string | number, offset?: number) {
    super('stale_reference', `${entity} ${id} no longer exists`, offset, entity);
  }
}

export class InvalidTransitionError extends PermanentError {
  constructor(message: string, offset?: number) {
    super('invalid_transition', message, offset);
  }
}

/** Failures that are never a message's fault; the runtime retries the batch until they pass. */
export class TransientError extends Error {
  readonly retriable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

export type Classification =
  { kind: 'transient' } | { kind: 'permanent'; reason: ReasonCode; entity?: EntityKind };

// connection loss, shutdown, resource exhaustion, serialization failure and deadlock
const transientSqlStates = /^(08...|40001|40P01|53...|57P0[1-4]|58...|55P03|25P03)$/;
const transientCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);
const transientMessages =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|socket hang up|Client was closed/i;

export function classify(error: unknown): Classification {
  if (error instanceof ContractError) return { kind: 'permanent', reason: error.reason };
  if (error instanceof PermanentError)
    return { kind: 'permanent', reason: error.reason, entity: error.entity };
  if (isTransient(error)) return { kind: 'transient' };
  return { kind: 'permanent', reason: 'processing_error' };
}

function isTransient(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 5) return false;
  const e = error as {
    retriable?: boolean;
    code?: string;
    name?: string;
    message?: string;
    cause?: unknown;
    status?: number;
    errors?: unknown[];
  };
  if (e instanceof TransientError || e.retriable === true) return true;
  if (typeof e.code === 'string' && (transientSqlStates.test(e.code) || transientCodes.has(e.code)))
    return true;
  // kafkajs says whether to retry; retries exhausted (retriable: false) are judged by their cause below
  if (e.name?.startsWith('KafkaJS') && e.retriable !== false) return true;
  // the registry client reports an unreachable registry as a ResponseError whose message names the socket error
  if (e.name === 'ResponseError' && typeof e.status === 'number' && e.status >= 500) return true;
  if (typeof e.message === 'string' && transientMessages.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((inner) => isTransient(inner, depth + 1)))
    return true;
  return isTransient(e.cause, depth + 1);
}
