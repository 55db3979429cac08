import { randomUUID } from 'node:crypto';
import { v5 as uuidv5 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { eventId } from '../src/message.js';

// the namespace event ids have always been derived under (message.ts): ids already in outboxes,
// topics and consumers' ledgers must come out the same
const EVENT_NAMESPACE = '6f1d4c1e-9a7b-5b0e-8c8e-2f6d5b3a9c41';

describe('event ids', () => {
  it("are uuid's v5 of group|message id|ordinal, for any well-formed text", () => {
    const ids = [
      '',
      'occurrence:00000000-0000-4000-8000-000000000000',
      'é',
      'グループ',
      '😀 a pair of surrogates',
      '\u0000 NUL',
      'x'.repeat(55),
      'x'.repeat(200),
      ...Array.from({ length: 500 }, () => `occurrence:${randomUUID()}`),
    ];
    for (const id of ids)
      for (const ordinal of [0, 7, 'dlq:1']) {
        const name = `shoal.grouping|${id}|${ordinal}`;
        expect(eventId('shoal.grouping', id, ordinal)).toBe(uuidv5(name, EVENT_NAMESPACE));
      }
  });

  it('a lone surrogate is refused, as uuid refuses it', () => {
    for (const id of ['\ud800', 'a\udc00b', 'end\ud83d'])
      expect(() => eventId('g', id, 0)).toThrow(URIError);
  });
});
