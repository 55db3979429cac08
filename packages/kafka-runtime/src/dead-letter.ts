import type { KafkaMessage, Message as KafkaOutgoing } from 'kafkajs';
import type { ReasonCode } from '@shoal/contracts';
import type { EntityKind } from './errors.js';
import { HEADER, headersOf } from './message.js';

/** Headers a dead-lettered record carries besides its own (prefix `shoal.dlq.`). */
export const DLQ_HEADER = {
  originalTopic: 'shoal.dlq.original-topic',
  originalPartition: 'shoal.dlq.original-partition',
  originalOffset: 'shoal.dlq.original-offset',
  originalTimestamp: 'shoal.dlq.original-timestamp',
  consumerGroup: 'shoal.dlq.consumer-group',
  reason: 'shoal.dlq.reason',
  entity: 'shoal.dlq.entity',
  errorClass: 'shoal.dlq.error-class',
  errorMessage: 'shoal.dlq.error-message',
  attemptCount: 'shoal.dlq.attempt-count',
  firstFailedAt: 'shoal.dlq.first-failed-at',
} as const;

export interface Failure {
  reason: ReasonCode;
  entity?: EntityKind;
  error: Error;
}

const MAX_ERROR_MESSAGE = 2000;

/**
 * The dead-letter record: the original key, value bytes and headers, plus the `shoal.dlq.*`
 * headers. A record that was dead-lettered before (and replayed) keeps its first-failed time and
 * counts one more attempt.
 */
export function deadLetterRecord(
  record: KafkaMessage,
  coordinates: { topic: string; partition: number; group: string; messageId: string },
  failure: Failure,
  now = new Date(),
): KafkaOutgoing {
  const original = headersOf(record.headers);
  const previousAttempts = Number(original[DLQ_HEADER.attemptCount] ?? 0);
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
    [DLQ_HEADER.errorMessage]: failure.error.message.slice(0, MAX_ERROR_MESSAGE),
    [DLQ_HEADER.attemptCount]: String(
      (Number.isFinite(previousAttempts) ? previousAttempts : 0) + 1,
    ),
    [DLQ_HEADER.firstFailedAt]: original[DLQ_HEADER.firstFailedAt] ?? now.toISOString(),
  };
  if (failure.entity) headers[DLQ_HEADER.entity] = failure.entity;
  else delete headers[DLQ_HEADER.entity];
  // the original bytes exactly; headers stay strings
  return { key: record.key, value: record.value, headers, timestamp: record.timestamp };
}
