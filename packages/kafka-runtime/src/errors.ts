import { ContractError, type ReasonCode } from '@shoal/contracts';
import pg from 'pg';

/**
 * The one place that decides whether a failure is transient (retry in place: never dead-letter,
 * never skip, never advance) or permanent (its reason code goes to the per-reason policy). Every
 * step of a chunk asks it: decoding, the ledger claim, lookups, the handler, the outbox and the
 * offset row. It reads the facts an error carries, never its wording, except where the origin
 * gives no other fact (the pg client's own connection errors, below).
 */

/**
 * A kind of entity messages reference (`detector`, `group`, …): the service declares its kinds with
 * its lookups; the runtime hard-codes none. Lower case, digits and `_` (it names environment variables).
 */
export type EntityKind = string;

/** A permanent failure of one message; handlers throw these (or a subclass) to name the reason. */
export class PermanentError extends Error {
  readonly retriable = false;
  constructor(
    readonly reason: ReasonCode,
    message: string,
    /** The offset of the message it belongs to, when the handler knows it (saves re-running the batch). */
    readonly offset?: number,
    readonly entity?: EntityKind,
    /** The referenced entity's id, for a stale or unknown reference (the DLQ record's header). */
    readonly entityId?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A reference to an entity whose deletion was seen (a tombstone), or that vanished mid-batch. */
export class StaleReferenceError extends PermanentError {
  constructor(entity: EntityKind, id: string | number, offset?: number, deletedAt?: Date) {
    super(
      'stale_reference',
      deletedAt
        ? `${entity} ${id} was deleted at ${deletedAt.toISOString()}`
        : `${entity} ${id} no longer exists`,
      offset,
      entity,
      String(id),
    );
  }
}

/** A reference to an entity never announced, held past its deadline. */
export class UnknownReferenceError extends PermanentError {
  constructor(entity: EntityKind, id: string, heldMs: number, offset?: number) {
    super(
      'unknown_reference',
      `${entity} ${id} was never announced (held ${Math.round(heldMs / 1000)} s)`,
      offset,
      entity,
      id,
    );
  }
}

export class InvalidTransitionError extends PermanentError {
  constructor(message: string, offset?: number) {
    super('invalid_transition', message, offset);
  }
}

/** A message parked behind its key's head longer than the parked deadline (parking.ts). */
export class ParkedExpiredError extends PermanentError {
  constructor(head: { messageId: string; reason: string; since: Date }, offset: number) {
    super(
      'parked_expired',
      `parked behind ${head.messageId} (${head.reason}) since ${head.since.toISOString()}, which was neither replayed nor discarded`,
      offset,
    );
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

const TRANSIENT: Classification = { kind: 'transient' };
const PROCESSING_ERROR: Classification = { kind: 'permanent', reason: 'processing_error' };

/**
 * SQLSTATEs that pass by themselves: connection exceptions (08), serialization failure and
 * deadlock (40001, 40P01), insufficient resources (53), statement timeout or cancel (57014),
 * administrator shutdown and crash (57P01–57P04), system errors (58), lock timeout (55P03),
 * idle-in-transaction timeout (25P03).
 */
const transientSqlStates = /^(08...|40001|40P01|53...|57014|57P0[1-4]|58...|55P03|25P03)$/;

/** Socket errors (Node's `code`), from any client: the peer is unreachable for now. */
const transientSocketCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);
/**
 * The pg client's and pool's own errors for a lost or unobtainable connection. They carry no
 * SQLSTATE and no code; these fixed messages (pg 8, pg-pool 3) are their only fact. The registry
 * client reports an unreachable registry with the socket error's text in its message.
 */
const connectionLostMessages =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|Client was closed and is not queryable|Cannot use a pool after calling end|socket hang up|ECONNREFUSED|ECONNRESET|ETIMEDOUT/;

/**
 * Which entity a foreign key's referenced table holds (PostgreSQL names it in 23503's detail);
 * `issues` is lifecycle's: a history row or claim for an issue gone mid-batch is stale_reference(issue).
 */
const entityOfTable: Record<string, EntityKind> = {
  groups: 'group',
  projects: 'project',
  detectors: 'detector',
  environments: 'environment',
  issues: 'issue',
};

export function classify(error: unknown): Classification {
  return classifyFacts(error, 0) ?? PROCESSING_ERROR;
}

type Facts = {
  retriable?: unknown;
  code?: unknown;
  name?: unknown;
  message?: unknown;
  status?: unknown;
  cause?: unknown;
  errors?: unknown;
};

/** The first fact that decides, from the error outwards to what it wraps; undefined when none does. */
function classifyFacts(error: unknown, depth: number): Classification | undefined {
  if (!error || typeof error !== 'object' || depth > 5) return undefined;
  if (error instanceof ContractError) return { kind: 'permanent', reason: error.reason };
  if (error instanceof PermanentError)
    return { kind: 'permanent', reason: error.reason, entity: error.entity };
  if (error instanceof TransientError) return TRANSIENT;
  const e = error as Facts;

  // PostgreSQL answered: its SQLSTATE decides
  if (error instanceof pg.DatabaseError && error.code)
    return classifySqlState(error.code, error.detail ?? '');

  // kafkajs: every error says whether to retry; retries exhausted on a retriable cause pass too.
  // Its retriers nest (a send's reconnects inside the send's retries): an inner one exhausted is not
  // retriable, so the outer one gives up with a KafkaJSNonRetriableError whose cause is what the
  // inner one retried (the broker unreachable), and that cause decides. One refused outright is
  // its own cause, or has none.
  if (typeof e.name === 'string' && e.name.startsWith('KafkaJS')) {
    // the one kafkajs error that says it is not retriable about a broker that is: it finds no group
    // coordinator when its every ask failed (a request timed out, the coordinator was loading), with
    // no cause kept (kafkajs issues #1445, #1630)
    if (e.name === 'KafkaJSGroupCoordinatorNotFound') return TRANSIENT;
    if (e.name === 'KafkaJSNumberOfRetriesExceeded' || e.name === 'KafkaJSNonRetriableError') {
      const cause = classifyFacts(e.cause, depth + 1);
      if (cause) return cause;
    }
    return e.retriable === false ? PROCESSING_ERROR : TRANSIENT;
  }

  if (typeof e.code === 'string' && transientSocketCodes.has(e.code)) return TRANSIENT;
  // the registry client: a 5xx is the registry's trouble, not the message's
  if (e.name === 'ResponseError' && typeof e.status === 'number' && e.status >= 500)
    return TRANSIENT;
  if (typeof e.message === 'string' && connectionLostMessages.test(e.message)) return TRANSIENT;

  if (Array.isArray(e.errors)) {
    // AggregateError (e.g. a connect that tried every address): transient if any attempt was
    for (const inner of e.errors)
      if (classifyFacts(inner, depth + 1)?.kind === 'transient') return TRANSIENT;
  }
  return classifyFacts(e.cause, depth + 1);
}

function classifySqlState(code: string, detail: string): Classification {
  if (transientSqlStates.test(code)) return TRANSIENT;
  if (code === '23503') {
    // foreign key violation on insert or update: the referenced row is gone (e.g. a group deleted mid-batch)
    const table = /is not present in table "([^"]+)"/.exec(detail)?.[1];
    if (table)
      return { kind: 'permanent', reason: 'stale_reference', entity: entityOfTable[table] };
  }
  // every other SQLSTATE is the data's fault: data exception (22, e.g. 22003 a number out of range
  // for its column), integrity violation (23), syntax or access rule (42), … A unique violation
  // lost to another member's concurrent insert is among them: the message's isolated re-run (a new
  // statement under READ COMMITTED) sees the winner's row and passes.
  return PROCESSING_ERROR;
}

/** What was thrown, as an Error (a thrown string or object keeps its text). */
export const asError = (thrown: unknown): Error =>
  thrown instanceof Error ? thrown : new Error(String(thrown));
