import { ConfigError } from '@shoal/config';
import { DEFAULT_KEY_OPTIONS } from '@shoal/dedup-keys';
import { describe, expect, it } from 'vitest';
import { dedupConfigFromEnv } from '../src/config.js';

describe('dedupConfigFromEnv', () => {
  it('defaults to a day and every part', () => {
    const config = dedupConfigFromEnv({});
    expect(config.windowMs).toBe(86_400_000);
    expect(config.keyOptionsOf(1)).toEqual(DEFAULT_KEY_OPTIONS);
  });

  it('reads the window, the parts and the parts per project', () => {
    const config = dedupConfigFromEnv({
      SHOAL_DEDUP_WINDOW_SECONDS: '600',
      SHOAL_DEDUP_KEY_PARTS: 'message,stack_frames:5',
      SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '{"42": "route"}',
    });
    expect(config.windowMs).toBe(600_000);
    expect(config.keyOptionsOf(1)).toEqual({ parts: ['message', 'stack_frames'], frames: 5 });
    expect(config.keyOptionsOf(42)).toEqual({ parts: ['route'], frames: 3 });
  });

  it.each([
    [{ SHOAL_DEDUP_WINDOW_SECONDS: '-1' }, 'SHOAL_DEDUP_WINDOW_SECONDS'],
    [{ SHOAL_DEDUP_WINDOW_SECONDS: '1.5' }, 'SHOAL_DEDUP_WINDOW_SECONDS'],
    [{ SHOAL_DEDUP_KEY_PARTS: 'message,title' }, 'SHOAL_DEDUP_KEY_PARTS'],
    [{ SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '{42: "route"}' }, 'SHOAL_DEDUP_KEY_PARTS_BY_PROJECT'],
    [{ SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '["route"]' }, 'SHOAL_DEDUP_KEY_PARTS_BY_PROJECT'],
    [
      { SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '{"x": "route"}' },
      'SHOAL_DEDUP_KEY_PARTS_BY_PROJECT at x',
    ],
    [{ SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '{"4": 1}' }, 'SHOAL_DEDUP_KEY_PARTS_BY_PROJECT at 4'],
    [
      { SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '{"4": "nope"}' },
      'SHOAL_DEDUP_KEY_PARTS_BY_PROJECT at 4',
    ],
  ])('refuses %j naming %s', (env, variable) => {
    let error: unknown;
    try {
      dedupConfigFromEnv(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => p.variable)).toEqual([variable]);
  });
});
