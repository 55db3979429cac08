import { randomUUID } from 'node:crypto';
import { v5 as uuidv5 } from 'uuid';
import type { Occurrence, StatusChange } from './messages.js';

/**
 * Message ids: what consumers deduplicate on (the `shoal.message-id` header). One rule, used by
 * every producer and by consumers reading a record that came without the header:
 *
 * - an occurrence's id is its `id` (required by its schema);
 * - a status change's id is its `id` when it has one; else, when it carries `update_date`, a UUID
 *   derived from its content (same content and same update_date are the same change, so a re-send
 *   is applied once); else the caller's idempotency id (the gateway's `Idempotency-Key` header);
 *   else a fresh UUID. Without an id or a date nothing tells a re-send from a second, equal change,
 *   and applying a status change twice has the effect of applying it once.
 */

const CONTENT_NAMESPACE = '0b8f3b5e-6a52-5c1d-9a8e-3f0c2d7e4b61';
const IDEMPOTENCY_NAMESPACE = '5d2c9e7a-1f4b-5e83-b6d0-8a7c3e2f9b14';

/** Sorted keys at every level, so equal content gives equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, v]) => `${JSON.stringify(key)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The id a status change's content gives it, only when it carries `update_date`. `shoal.trace_id`
 * and `shoal.request_id` are transport metadata, not content: a retry may carry new ones.
 */
export function statusChangeContentId(change: StatusChange): string | undefined {
  if (change.update_date === undefined || change.update_date === null) return undefined;
  const { id: _id, shoal, ...top } = change;
  const { trace_id: _trace, request_id: _request, ...shoalContent } = shoal ?? {};
  return uuidv5(canonicalJson({ ...top, shoal: shoalContent }), CONTENT_NAMESPACE);
}

/** A status change's id by the rule above; `idempotencyId` is used only when neither id nor date decides. */
export function statusChangeId(change: StatusChange, idempotencyId?: string): string {
  return change.id ?? statusChangeContentId(change) ?? idempotencyId ?? randomUUID();
}

/**
 * The `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header): 16 to
 * 128 characters of letters, digits and `-_.:`; a UUID is a good key. Declared once, here, as
 * JSON Schema so HTTP routes validate it and document it from the same object.
 */
export const idempotencyKeySchema = {
  description:
    'Makes a retry of this request safe: a status change without `id` or `update_date` gets an id derived from this key and its index in the request, so the same key sent again gives the same ids.',
  type: 'string',
  minLength: 16,
  maxLength: 128,
  pattern: '^[A-Za-z0-9._:-]+$',
} as const;

/**
 * The id of item `index` of a request sent with idempotency key `key` (a single object is index
 * 0): the UUID of `<key>:<index>`, so a retried request gives every item the id it had before.
 */
export function idempotentItemId(key: string, index: number): string {
  return uuidv5(`${key}:${index}`, IDEMPOTENCY_NAMESPACE);
}

/** The `shoal.message-id` header value for a message of this kind with this id. */
export function messageIdHeader(kind: 'occurrences' | 'statusChanges', id: string): string {
  return `${kind === 'occurrences' ? 'occurrence' : 'status-change'}:${id}`;
}

/**
 * The message id a consumer takes from a payload that came without the header (a producer other
 * than `@shoal/producer`): the occurrence's id, or a status change's id or content id; undefined
 * when the payload decides none (the runtime then uses the record's coordinates: a fresh id).
 */
export function payloadMessageId(value: unknown, kind: string): string | undefined {
  if (kind === 'occurrences') return messageIdHeader(kind, (value as Occurrence).id);
  if (kind === 'statusChanges') {
    const change = value as StatusChange;
    const id = change.id ?? statusChangeContentId(change);
    return id === undefined ? undefined : messageIdHeader(kind, id);
  }
  return undefined;
}
