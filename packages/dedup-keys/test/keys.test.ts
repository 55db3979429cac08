import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, explain, parseKeyOptions } from '../src/index.js';

const signal = {
  message: 'Order 1234 not found for bob@example.com',
  component: 'billing.orders',
  route: '/api/orders/1234',
  stack_frames: [
    'find app/orders.ts:10',
    'handle app/routes.ts:20',
    'serve app/server.ts:30',
    'main app/main.ts:1',
  ],
};

describe('explain', () => {
  it('normalises every part, frames cut to the top ones without line numbers', () => {
    expect(explain(signal)).toEqual({
      normalised: 'Order <int> not found for <email>',
      key: expect.stringMatching(/^[0-9a-f]{32}$/) as unknown,
      parts: {
        message: 'Order <int> not found for <email>',
        component: 'billing.orders',
        route: '/api/orders/<int>',
        stack_frames: ['find app/orders.ts', 'handle app/routes.ts', 'serve app/server.ts'],
      },
    });
  });

  it('gives two reports of one incident one key', () => {
    const other = {
      ...signal,
      message: 'Order 98 not found for alice@example.org',
      route: '/api/orders/98',
      stack_frames: [
        'find app/orders.ts:12',
        'handle app/routes.ts:21',
        'serve app/server.ts:30',
        'other x.ts:1',
      ],
    };
    expect(explain(other).key).toBe(explain(signal).key);
  });

  it('keys only the parts a project counts', () => {
    const elsewhere = { ...signal, route: '/api/refunds/7', component: 'billing.refunds' };
    expect(explain(elsewhere).key).not.toBe(explain(signal).key);
    const messageOnly = { parts: ['message'] as const, frames: 3 };
    expect(explain(elsewhere, messageOnly).key).toBe(explain(signal, messageOnly).key);
  });

  it('counts as many frames as configured', () => {
    const deeper = {
      ...signal,
      stack_frames: [...signal.stack_frames.slice(0, 3), 'other x.ts:1'],
    };
    expect(explain(deeper).key).toBe(explain(signal).key);
    const four = { parts: DEFAULT_KEY_OPTIONS.parts, frames: 4 };
    expect(explain(deeper, four).key).not.toBe(explain(signal, four).key);
  });

  it('has no key when every counted part is empty', () => {
    expect(
      explain({ route: '/x' }, { parts: ['message', 'stack_frames'], frames: 3 }).key,
    ).toBeNull();
    expect(explain({}).key).toBeNull();
  });
});

describe('parseKeyOptions', () => {
  it('reads the parts and a frame count', () => {
    expect(parseKeyOptions('message, stack_frames:5')).toEqual({
      parts: ['message', 'stack_frames'],
      frames: 5,
    });
    expect(parseKeyOptions('route')).toEqual({ parts: ['route'], frames: 3 });
  });

  it.each([
    ['an unknown part', 'message,title', /unknown dedup key part "title"/],
    ['a count on another part', 'message:2', /only stack_frames takes a count/],
    ['a count that is not a number', 'stack_frames:x', /only stack_frames takes a count/],
    ['nothing', ' , ', /no dedup key parts/],
  ])('refuses %s', (_case, text, error) => {
    expect(() => parseKeyOptions(text)).toThrow(error);
  });
});
