import { assertValid, topicKeyOf } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import type { Logger } from '@shoal/observability';
import type { Failure } from './dead-letter.js';
import { asError, classify, PermanentError } from './errors.js';
import type { Handler, HandlerContext } from './handler.js';
import { checkReferences, type Hold, type Lookup } from './lookups.js';
import { eventId, type Message, type OutgoingEvent } from './message.js';
import type { ReferenceRules } from './policy.js';
import { claimMessageIds, releaseMessageIds } from './store.js';

/**
 * Steps 2–4 of a chunk, on its decoded messages, isolated per message: claim their ids in the
 * processed ledger (duplicates drop out), look up the entities they reference (those naming a
 * deleted one, or an unknown one past its hold deadline, are set aside as failures; those naming an
 * unknown one of an `announce` kind are held: lookups.ts), run the handler on the rest (the messages it rejects are among the applied, with their
 * rejection). The three run in one savepoint over all the messages first.
 * A permanent error anywhere in them (the handler's, or a lookup or the claim failing on one
 * message's value, e.g. SQLSTATE 22003 for an id too large for its column) rolls back to the
 * savepoint, and the culprit is found: named by the error's offset, else by running the steps
 * message by message, each in a savepoint of its own. Culprits are set aside with their failure;
 * everything else is applied.
 *
 * Blocks on: PostgreSQL (the chunk's transaction) and the handler.
 * Throws: transient errors only (by `classify`), leaving the transaction for the caller to roll back.
 * Rebalance: holds no state; the chunk's transaction holds the partition's offset row, so a member
 * that lost the partition mid-chunk finishes (or rolls back) before the new owner applies.
 */

export interface Emitted<T> {
  source: Message<T>;
  id: string;
  event: OutgoingEvent;
}

/** A message the handler refused with `ctx.reject`: applied, with this outcome recorded. */
export interface Rejected<T> {
  message: Message<T>;
  reason: string;
  detail: string;
}

export interface IsolatedResult<T> {
  applied: Message<T>[];
  duplicates: number;
  failed: Map<Message<T>, Failure>;
  /** Waiting for an entity to be announced: not applied, their claims taken back. */
  held: Map<Message<T>, Hold>;
  emitted: Emitted<T>[];
  rejected: Rejected<T>[];
}

export interface IsolationSteps<T> {
  group: string;
  lookups: Lookup<T>[];
  references: ReferenceRules;
  handle: Handler<T>;
  logger: Logger;
}

const failureOf = (error: unknown, classified: { reason: Failure['reason']; entity?: string }) => ({
  reason: classified.reason,
  entity: classified.entity,
  entityId: error instanceof PermanentError ? error.entityId : undefined,
  error: asError(error),
});

/** What `ctx.reject` accepts as a reason: it names an environment variable (SHOAL_POLICY_REJECTED_<REASON>). */
export const REJECTION_REASON = /^[a-z][a-z0-9_]*$/;

type Attempt<T> =
  | {
      ok: true;
      applied: Message<T>[];
      duplicates: number;
      stale: Map<Message<T>, Failure>;
      held: Map<Message<T>, Hold>;
      emitted: Emitted<T>[];
      rejected: Rejected<T>[];
    }
  | { ok: false; failure: Failure; offset?: number };

/**
 * `opening`, when given, is a savepoint of the caller's set before anything else: in the first
 * attempt's claim round trip, or on its own when there is nothing to attempt.
 */
export async function applyIsolated<T>(
  tx: PoolClient,
  messages: Message<T>[],
  steps: IsolationSteps<T>,
  opening?: string,
): Promise<IsolatedResult<T>> {
  const result: IsolatedResult<T> = {
    applied: [],
    duplicates: 0,
    failed: new Map(),
    held: new Map(),
    emitted: [],
    rejected: [],
  };
  const take = (attempt: Attempt<T> & { ok: true }) => {
    result.applied.push(...attempt.applied);
    result.duplicates += attempt.duplicates;
    result.emitted.push(...attempt.emitted);
    result.rejected.push(...attempt.rejected);
    for (const [message, failure] of attempt.stale) result.failed.set(message, failure);
    for (const [message, hold] of attempt.held) result.held.set(message, hold);
  };

  if (opening && messages.length === 0) await tx.query(`SAVEPOINT ${opening}`);
  let remaining = messages;
  let first = opening;
  while (remaining.length > 0) {
    // nothing follows a whole attempt that succeeds: its savepoint is left to the COMMIT
    const all = await attemptSteps(tx, remaining, steps, false, first);
    first = undefined;
    if (all.ok) {
      take(all);
      return result;
    }
    const named =
      all.offset === undefined ? undefined : remaining.find((m) => m.offset === all.offset);
    if (named) {
      result.failed.set(named, all.failure);
      remaining = remaining.filter((m) => m !== named);
      continue;
    }
    if (remaining.length === 1) {
      result.failed.set(remaining[0]!, all.failure);
      return result;
    }
    // no culprit named: one message at a time
    for (const message of remaining) {
      const one = await attemptSteps(tx, [message], steps, true);
      if (one.ok) take(one);
      else result.failed.set(message, one.failure);
    }
    return result;
  }
  return result;
}

/**
 * Claim, lookups and handler over `batch` in one savepoint (set in the claim's round trip, after
 * `opening` when given); rolled back to it on a permanent error, released on success when `release`
 * (more attempts follow).
 */
async function attemptSteps<T>(
  tx: PoolClient,
  batch: Message<T>[],
  steps: IsolationSteps<T>,
  release: boolean,
  opening?: string,
): Promise<Attempt<T>> {
  const { group } = steps;
  try {
    const claimed = await claimMessageIds(
      tx,
      group,
      batch.map((m) => m.messageId),
      [...(opening ? [opening] : []), 'shoal_apply'],
    );
    const candidates: Message<T>[] = [];
    for (const message of batch) if (claimed.delete(message.messageId)) candidates.push(message);
    const references = await checkReferences(candidates, steps.lookups, steps.references, tx);
    // a stale or held message is not applied: its claim is taken back, so a replay or re-drive applies it
    await releaseMessageIds(
      tx,
      group,
      [...references.failed.keys(), ...references.held.keys()].map((m) => m.messageId),
    );
    const applied = candidates.filter((m) => !references.failed.has(m) && !references.held.has(m));
    const emitted: Emitted<T>[] = [];
    const rejected = new Map<Message<T>, Rejected<T>>();
    if (applied.length > 0)
      await steps.handle(
        applied,
        tx,
        handlerContext(group, applied, emitted, rejected, steps.logger),
      );
    if (release) await tx.query('RELEASE SAVEPOINT shoal_apply');
    const stale = new Map<Message<T>, Failure>(
      [...references.failed].map(([m, error]) => [m, failureOf(error, error)]),
    );
    return {
      ok: true,
      applied,
      duplicates: batch.length - candidates.length,
      stale,
      held: references.held,
      emitted,
      rejected: [...rejected.values()],
    };
  } catch (error) {
    await tx.query('ROLLBACK TO SAVEPOINT shoal_apply');
    const classified = classify(error);
    if (classified.kind === 'transient') throw error;
    return {
      ok: false,
      failure: failureOf(error, classified),
      offset: error instanceof PermanentError ? error.offset : undefined,
    };
  }
}

/** The handler's `ctx` for one attempt: what it emits and rejects counts only if the attempt does. */
function handlerContext<T>(
  group: string,
  batch: Message<T>[],
  emitted: Emitted<T>[],
  rejected: Map<Message<T>, Rejected<T>>,
  logger: Logger,
): HandlerContext<T> {
  const ordinals = new Map<Message<T>, number>();
  // made on the first reject: most batches reject nothing
  let inBatch: Set<Message<T>> | undefined;
  return {
    logger,
    reject(message, reason, detail) {
      if (!(inBatch ??= new Set(batch)).has(message))
        throw new Error('reject: the message is not in this batch');
      if (!REJECTION_REASON.test(reason))
        throw new Error(`reject: reason ${JSON.stringify(reason)} is not snake_case`);
      if (!rejected.has(message)) rejected.set(message, { message, reason, detail });
    },
    emit(source, build) {
      const ordinal = ordinals.get(source) ?? 0;
      ordinals.set(source, ordinal + 1);
      const id = eventId(group, source.messageId, ordinal);
      const event = build(id);
      const key = topicKeyOf(event.topic);
      if (!key) throw new Error(`emit: ${event.topic} is not a Shoal topic`);
      assertValid(key, event.value);
      emitted.push({ source, id, event });
    },
  };
}
