import { ConfigError } from '@shoal/config';
import { describe, expect, it } from 'vitest';
import { regressionConfig } from '../src/config.js';

describe('regression settings from the environment', () => {
  it('defaults: 5 s grace, 2× escalation, flapping past 3 in an hour, 600 s to confirm', () => {
    expect(regressionConfig({})).toEqual({
      decide: { graceSeconds: 5, escalationMultiple: 2 },
      flapping: { limit: 3, windowSeconds: 3600 },
      confirmDeadlineSeconds: 600,
    });
  });

  it('a bad value is refused naming the variable', () => {
    expect(() => regressionConfig({ SHOAL_REGRESSION_GRACE_SECONDS: '-1' })).toThrow(ConfigError);
    expect(() => regressionConfig({ SHOAL_REGRESSION_FLAPPING_LIMIT: 'often' })).toThrow(
      /SHOAL_REGRESSION_FLAPPING_LIMIT/,
    );
  });
});
