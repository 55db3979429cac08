import { storableText, type PoolClient } from '@shoal/db';
import type { KafkaMessage } from 'kafkajs';
import { headersOf } from './message.js';
import { discardParkedHead } from './parking.js';

/**
 * An operator's discard of a parked key's head, as a command on the topic the consumer owns (never
 * a write into its tables): `shoal dlq discard` publishes a **discard marker** to the head's
 * original topic with the head's key (so the default partitioner puts it on the head's partition,
 * behind every message parked there) and these headers; its value is null. The group named by
 * `shoal.dlq.consumer-group` (the one that dead-lettered the head) takes the marker out of its
 * chunk, never decoded, claimed or handed to the handler, and, on an ordered topic, releases the key
 * if it is still parked behind that very head (`shoal.discard.head`, the head's message id), in
 * the chunk's transaction: the key's parked messages, then its arrivals in the same chunk, apply in
 * order there (parking.ts). A marker whose head no longer heads the key (replayed meanwhile, or a
 * marker published twice) changes nothing. Other groups count it as another group's replay
 * (chunk.ts), a duplicate; so does every group a marker naming no group. The discarded head's
 * dead letter stays in its DLQ topic; the head is not in the ledger as applied, so replayed later
 * it is applied as a new message.
 */
export const DISCARD_HEADER = {
  /** The message id of the discarded head. */
  head: 'shoal.discard.head',
  /** The discard (the CLI's record of it). */
  id: 'shoal.discard.id',
  at: 'shoal.discard.at',
  by: 'shoal.discard.by',
  reason: 'shoal.discard.reason',
  /** `<dlq topic>:<offset>` of the head's dead letter. */
  source: 'shoal.discard.source',
} as const;

/** The head a discard marker discards; undefined for any other record. */
export const discardedHeadOf = (
  record: KafkaMessage,
  headers = headersOf(record.headers),
): string | undefined => headers[DISCARD_HEADER.head];

/**
 * Releases the keys of `markers` (records of `group`'s own, on one partition of an ordered topic)
 * whose parked head is the one each marker names. Returns how many keys it released.
 */
export async function releaseDiscardedHeads(
  tx: PoolClient,
  where: { group: string; topic: string },
  markers: KafkaMessage[],
): Promise<number> {
  let released = 0;
  for (const record of markers) {
    // stored as parking.ts stores keys and ids (NUL escaped)
    const key = storableText(record.key?.toString() ?? null);
    const head = storableText(discardedHeadOf(record) ?? null);
    if (key === null || !head) continue;
    if (await discardParkedHead(tx, { ...where, key, headMessageId: head })) released++;
  }
  return released;
}
