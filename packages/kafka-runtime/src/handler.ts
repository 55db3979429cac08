import type { PoolClient } from '@shoal/db';
import type { Logger } from '@shoal/observability';
import type { Message, OutgoingEvent } from './message.js';

export interface HandlerContext<T> {
  /**
   * Queue an event for the outbox on behalf of `source`. Its id is derived from the source's
   * message id and how many events the source emitted before it, so a re-run gives the same id;
   * `build` receives that id (to put in the payload) and returns the event. The event is validated
   * against its topic's schema here (an invalid one throws `ContractError`).
   */
  emit(source: Message<T>, build: (eventId: string) => OutgoingEvent): void;
  /**
   * Refuse `message` (a command the domain does not allow: an illegal lifecycle transition, a
   * claim race lost). A normal outcome, not a failure: the message counts as applied (its id stays
   * in the ledger, so a re-send is not judged again), its effects and events commit with the batch,
   * and a row in `message_rejections` (group, topic, partition, offset, message id, `reason`,
   * `detail`) commits with them for a caller to read. It never parks the message's key and never
   * counts toward dead-letter limits; `SHOAL_POLICY_REJECTED_<REASON>=dlq` also copies the record to
   * the dead-letter topic (reason `rejected`). `reason` is snake_case (`[a-z][a-z0-9_]*`); a message
   * rejected twice keeps its first rejection.
   */
  reject(message: Message<T>, reason: string, detail: string): void;
  logger: Logger;
}

/**
 * A service's domain logic: apply `batch` with `tx`. The contract, both ways:
 *
 * **It receives** messages of one partition, in offset order, already decoded and schema-valid,
 * deduplicated by message id (redeliveries, replays, an upstream re-send) and checked by the
 * service's lookups (no stale reference among them). It may receive the same messages again: a
 * batch with a failing message is re-run without it, or one message at a time, each in a
 * savepoint; a transient failure rolls everything back and the batch comes again later.
 *
 * **It may** read and write PostgreSQL through `tx` (the runtime's transaction: offsets, ledger,
 * outbox rows, dead letters and failure records commit with its writes or not at all); call
 * `ctx.emit` for each outgoing event; throw.
 *
 * **It must not** commit, roll back or open transactions, or savepoints named `shoal_*`; produce to
 * Kafka (emit instead); keep in memory across batches what the database does not also hold (a
 * restart or rebalance loses it); depend on the key's format; take unbounded time (the runtime
 * heartbeats between chunks, and a partition's other messages wait).
 *
 * **What a throw means** is decided by `classify` (errors.ts): a `PermanentError` (or subclass:
 * `StaleReferenceError`, `InvalidTransitionError`) with an `offset` sets that message aside by its
 * reason and re-runs the rest; any other permanent error (a PostgreSQL data, integrity or syntax
 * error, a bug) re-runs the batch one message at a time to find the culprit, which gets
 * `processing_error` (or `stale_reference` for a foreign key to a row that is gone); a transient
 * error (connection lost, serialization failure, deadlock, timeout, `TransientError`) rolls back
 * the chunk and retries it with backoff, never dead-lettering or skipping.
 */
export type Handler<T> = (
  batch: Message<T>[],
  tx: PoolClient,
  ctx: HandlerContext<T>,
) => Promise<void>;
