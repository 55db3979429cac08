import { dlqTopic, type ReasonCode } from '@shoal/contracts';
import type { KafkaMessage } from 'kafkajs';
import type { EntityKind } from './errors.js';
import { eventId, HEADER, headersOf } from './message.js';
import type { RawOutboxEvent } from './store.js';

/** Headers a dead-lettered record carries besides its own (prefix `shoal.dlq.`). */
export const DLQ_HEADER = {
  originalTopic: 'shoal.dlq.original-topic',
  originalPartition: 'shoal.dlq.original-partition',
  originalOffset: 'shoal.dlq.original-offset',
  originalTimestamp: 'shoal.dlq.original-timestamp',
  consumerGroup: 'shoal.dlq.consumer-group',
  reason: 'shoal.dlq.reason',
  entity: 'shoal.dlq.entity',
  /** The referenced entity's id, for `stale_reference` and `unknown_reference`. */
  entityId: 'shoal.dlq.entity-id',
  /** For a rejection copied to the DLQ (`shoal.dlq.reason` = `rejected`): the handler's reason. */
  rejection: 'shoal.dlq.rejection',
  errorClass: 'shoal.dlq.error-class',
  errorMessage: 'shoal.dlq.error-message',
  attemptCount: 'shoal.dlq.attempt-count',
  firstFailedAt: 'shoal.dlq.first-failed-at',
} as const;

export interface Failure {
  reason: ReasonCode;
  entity?: EntityKind;
  entityId?: string;
  error: Error;
}

/** Why a record goes to the DLQ: a failure, or a rejection its policy copies there. */
export type DeadLetterCause = Failure | { reason: 'rejected'; rejection: string; error: Error };

/** A rejection as a dead-letter cause: error class `Rejected`, error message the handler's detail. */
export function rejectionCause(rejection: string, detail: string): DeadLetterCause {
  const error = new Error(detail);
  error.name = 'Rejected';
  return { reason: 'rejected', rejection, error };
}

const MAX_ERROR_MESSAGE = 2000;

/**
 * The dead-letter record of a failed (or rejected, by policy) message, as an outbox event the relay produces verbatim to
 * `<topic>.dlq`: the original key, value bytes and headers, plus the `shoal.dlq.*` headers. It is
 * written in the chunk's transaction, so it exists once exactly when the chunk commits (a rolled
 * back or re-run chunk writes it again only if it did not commit). A record that was dead-lettered
 * before (and replayed) keeps its first-failed time and counts one more attempt; the attempt is
 * part of the event id, so each dead-lettering of a message is one distinct event.
 *
 * Blocks on nothing, throws nothing; a rebalance does not concern it.
 */
export function deadLetterEvent(
  record: KafkaMessage,
  coordinates: { topic: string; partition: number; group: string; messageId: string },
  failure: DeadLetterCause,
  now = new Date(),
): RawOutboxEvent {
  const original = headersOf(record.headers);
  const previousAttempts = Number(original[DLQ_HEADER.attemptCount] ?? 0);
  const attempt =
    (Number.isInteger(previousAttempts) && previousAttempts > 0 ? previousAttempts : 0) + 1;
  const headers: Record<string, string> = {
    ...original,
    [HEADER.messageId]: coordinates.messageId,
    [DLQ_HEADER.originalTopic]: coordinates.topic,
    [DLQ_HEADER.originalPartition]: String(coordinates.partition),
    [DLQ_HEADER.originalOffset]: record.offset,
    [DLQ_HEADER.originalTimestamp]: record.timestamp,
    [DLQ_HEADER.consumerGroup]: coordinates.group,
    [DLQ_HEADER.reason]: failure.reason,
    [DLQ_HEADER.errorClass]: failure.error.name || failure.error.constructor.name,
    // NUL escaped: the message may quote the record's bytes, and the outbox_events view reads jsonb
    [DLQ_HEADER.errorMessage]: failure.error.message
      .slice(0, MAX_ERROR_MESSAGE)
      .replaceAll('\u0000', '\\u0000'),
    [DLQ_HEADER.attemptCount]: String(attempt),
    [DLQ_HEADER.firstFailedAt]: original[DLQ_HEADER.firstFailedAt] ?? now.toISOString(),
  };
  if ('entity' in failure && failure.entity) headers[DLQ_HEADER.entity] = failure.entity;
  else delete headers[DLQ_HEADER.entity];
  if ('entityId' in failure && failure.entityId !== undefined)
    headers[DLQ_HEADER.entityId] = failure.entityId.replaceAll('\u0000', '\\u0000');
  else delete headers[DLQ_HEADER.entityId];
  if ('rejection' in failure) headers[DLQ_HEADER.rejection] = failure.rejection;
  else delete headers[DLQ_HEADER.rejection];
  return {
    eventId: eventId(coordinates.group, coordinates.messageId, `dlq:${attempt}`),
    topic: dlqTopic(coordinates.topic),
    raw: true,
    // the original bytes exactly; headers stay strings
    keyBase64: record.key?.toString('base64') ?? null,
    valueBase64: record.value?.toString('base64') ?? null,
    headers,
    timestamp: record.timestamp,
  };
}

/**
 * The consumer group a replayed dead letter belongs to: the one that dead-lettered it (its
 * `shoal.dlq.consumer-group`, which a replay keeps). Undefined for a record that is no replay.
 */
export const deadLetteredBy = (
  record: KafkaMessage,
  headers = headersOf(record.headers),
): string | undefined => headers[DLQ_HEADER.consumerGroup];
