import { describe, expect, it } from 'vitest';
import {
  compileJsonSchema,
  fieldProblems,
  idempotencyKeySchema,
  idempotentItemId,
  payloadMessageId,
  statusChangeContentId,
  statusChangeId,
  type StatusChange,
} from '../src/index.js';

const change: StatusChange = {
  project_id: 7,
  fingerprint: ['checkout:TypeError'],
  new_status: 1,
  new_substatus: null,
  update_date: '2026-11-30T01:00:00+00:00',
  shoal: { trace_id: 'trace-1', resolved_in_release: '1.2.0' },
};
const { update_date: _date, ...undated } = change;

describe('status-change ids', () => {
  it('a dated change: the same content and date give the same id, whatever the key order or trace', () => {
    const id = statusChangeContentId(change)!;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const reordered = Object.fromEntries(Object.entries(change).reverse()) as StatusChange;
    expect(statusChangeContentId(reordered)).toBe(id);
    expect(
      statusChangeContentId({
        ...change,
        shoal: { ...change.shoal, trace_id: 'retry', request_id: 'r2' },
      }),
    ).toBe(id);
    expect(statusChangeContentId({ ...change, update_date: '2026-11-30T01:00:01+00:00' })).not.toBe(
      id,
    );
    expect(statusChangeContentId({ ...change, new_status: 2 })).not.toBe(id);
    expect(
      statusChangeContentId({
        ...change,
        shoal: { ...change.shoal, resolved_in_release: '1.3.0' },
      }),
    ).not.toBe(id);
  });

  it('takes its own id first, then the content id, then the idempotency id, else a fresh one', () => {
    const own = '11111111-2222-4333-8444-555555555555';
    expect(statusChangeId({ ...change, id: own }, 'key-id')).toBe(own);
    expect(statusChangeId(change, 'key-id')).toBe(statusChangeContentId(change));
    expect(statusChangeContentId({ ...undated, update_date: null })).toBeUndefined();
    expect(statusChangeId(undated, 'key-id')).toBe('key-id');
    expect(statusChangeId(undated)).not.toBe(statusChangeId(undated));
  });

  it('an idempotency key gives each index its own stable id', () => {
    const key = '0b5c3a52-7f3e-4b8e-9d1a-6c2f8e4d7a90';
    expect(idempotentItemId(key, 0)).toBe(idempotentItemId(key, 0));
    expect(idempotentItemId(key, 0)).not.toBe(idempotentItemId(key, 1));
    expect(idempotentItemId(key, 0)).not.toBe(idempotentItemId(`${key}x`, 0));
  });

  it('a consumer reading a record without the header takes the same ids from the payload', () => {
    expect(payloadMessageId(change, 'statusChanges')).toBe(
      `status-change:${statusChangeContentId(change)}`,
    );
    expect(payloadMessageId(undated, 'statusChanges')).toBeUndefined();
    expect(payloadMessageId({ id: 'abc' }, 'occurrences')).toBe('occurrence:abc');
    expect(payloadMessageId({ id: 'abc' }, 'entityChanges')).toBeUndefined();
  });
});

describe('Idempotency-Key format', () => {
  const validate = compileJsonSchema(idempotencyKeySchema);
  const problems = (key: string) => (validate(key) ? [] : fieldProblems(validate.errors));

  it('takes 16 to 128 letters, digits and - _ . :', () => {
    expect(problems('0b5c3a52-7f3e-4b8e-9d1a-6c2f8e4d7a90')).toEqual([]);
    expect(problems('job:42.attempt_1-x')).toEqual([]);
    for (const bad of [
      'k'.repeat(15),
      'k'.repeat(129),
      `${'k'.repeat(16)} space`,
      `${'k'.repeat(16)}é`,
    ])
      expect(problems(bad)).toHaveLength(1);
  });
});
