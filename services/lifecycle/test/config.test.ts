import { ConfigError } from '@shoal/config';
import { describe, expect, it } from 'vitest';
import { lifecycleConfigFromEnv } from '../src/config.js';
import { DEFAULT_SLA_MS } from '../src/transitions.js';

describe('lifecycleConfigFromEnv', () => {
  it('defaults: critical 4h, high 24h, medium 3d, low 7d; a sweep every 5 s', () => {
    expect(lifecycleConfigFromEnv({})).toEqual({ slaMs: DEFAULT_SLA_MS, sweepIntervalMs: 5000 });
  });

  it('reads any subset of the SLA; the rest keep their defaults', () => {
    const config = lifecycleConfigFromEnv({
      SHOAL_LIFECYCLE_SLA: 'critical=30m, low=14d',
      SHOAL_LIFECYCLE_SWEEP_SECONDS: '0.5',
    });
    expect(config.slaMs).toEqual({ ...DEFAULT_SLA_MS, critical: 1_800_000, low: 14 * 86_400_000 });
    expect(config.sweepIntervalMs).toBe(500);
  });

  it.each([
    [{ SHOAL_LIFECYCLE_SLA: 'urgent=1h' }, 'SHOAL_LIFECYCLE_SLA'],
    [{ SHOAL_LIFECYCLE_SLA: 'critical=4' }, 'SHOAL_LIFECYCLE_SLA'],
    [{ SHOAL_LIFECYCLE_SLA: 'critical=0h' }, 'SHOAL_LIFECYCLE_SLA'],
    [{ SHOAL_LIFECYCLE_SLA: '' }, 'SHOAL_LIFECYCLE_SLA'],
    [{ SHOAL_LIFECYCLE_SWEEP_SECONDS: '0' }, 'SHOAL_LIFECYCLE_SWEEP_SECONDS'],
    [{ SHOAL_LIFECYCLE_SWEEP_SECONDS: 'often' }, 'SHOAL_LIFECYCLE_SWEEP_SECONDS'],
  ])('%j fails naming %s', (env, variable) => {
    let error: unknown;
    try {
      lifecycleConfigFromEnv(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => p.variable)).toEqual([variable]);
  });
});
