import { env, loadConfig, z, type Env } from '@shoal/config';
import type { DecideOptions } from '@shoal/regression-rules';

/** Regression's own settings, from the environment (a bad one stops the service, named). */
export interface RegressionConfig {
  decide: DecideOptions;
  /** Flagged flapping: more than `limit` regressions of one group within `windowSeconds`. */
  flapping: { limit: number; windowSeconds: number };
  /** A proposal grouping has not answered within this long is an orphan (`shoal orphans report`). */
  confirmDeadlineSeconds: number;
}

const nonNegative = () =>
  z.coerce.number({ error: 'expected a non-negative number' }).nonnegative({
    error: 'expected a non-negative number',
  });

export function regressionConfig(source: Env = process.env): RegressionConfig {
  const c = loadConfig(
    {
      SHOAL_REGRESSION_GRACE_SECONDS: nonNegative().default(5),
      SHOAL_REGRESSION_ESCALATION_MULTIPLE: nonNegative().default(2),
      SHOAL_REGRESSION_FLAPPING_LIMIT: env.positiveInt().default(3),
      SHOAL_REGRESSION_FLAPPING_WINDOW_SECONDS: env.positiveInt().default(3600),
      SHOAL_REGRESSION_CONFIRM_DEADLINE_SECONDS: env.positiveInt().default(600),
    },
    source,
  );
  return {
    decide: {
      graceSeconds: c.SHOAL_REGRESSION_GRACE_SECONDS,
      escalationMultiple: c.SHOAL_REGRESSION_ESCALATION_MULTIPLE,
    },
    flapping: {
      limit: c.SHOAL_REGRESSION_FLAPPING_LIMIT,
      windowSeconds: c.SHOAL_REGRESSION_FLAPPING_WINDOW_SECONDS,
    },
    confirmDeadlineSeconds: c.SHOAL_REGRESSION_CONFIRM_DEADLINE_SECONDS,
  };
}
