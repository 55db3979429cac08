import type { DlqLimits } from './policy.js';

export class DlqLimitExceeded extends Error {
  constructor(
    /** `max_parked_messages`: more messages parked behind dead-lettered heads than SHOAL_MAX_PARKED_MESSAGES (parking.ts). */
    readonly limit: 'max_invalid_ratio' | 'max_consecutive' | 'max_parked_messages',
    detail: string,
  ) {
    super(
      `dead-letter limit ${limit} crossed: ${detail}; stopping instead of dead-lettering everything`,
    );
    this.name = 'DlqLimitExceeded';
  }
}

/** What the window would hold once a chunk's outcomes count; `DlqLimiter.apply` makes it so. */
export interface DlqWindow {
  readonly buckets: readonly { second: number; valid: number; invalid: number }[];
  readonly consecutive: number;
}

/**
 * Arroyo-style dead-letter limits over a sliding time window (buckets of a second), one limiter per
 * partition (as Arroyo's): a partition of bad messages is not hidden by good ones elsewhere. A
 * chunk's outcomes are checked before it commits (the chunk that crosses a limit is not
 * committed) and applied only after it committed, so a chunk that is rolled back and re-run is
 * counted once.
 */
export class DlqLimiter {
  private window: DlqWindow = { buckets: [], consecutive: 0 };

  constructor(
    private readonly limits: DlqLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Outcomes in message order (true = applied): the window they would make, without changing this
   * limiter. Throws `DlqLimitExceeded` when they would cross a limit.
   */
  check(outcomes: boolean[]): DlqWindow {
    const second = Math.floor(this.now() / 1000);
    const windowStart = second - Math.ceil(this.limits.windowMs / 1000);
    const buckets = this.window.buckets
      .filter((b) => b.second > windowStart)
      .map((b) => ({ ...b }));
    let bucket = buckets.find((b) => b.second === second);
    if (!bucket) buckets.push((bucket = { second, valid: 0, invalid: 0 }));
    let consecutive = this.window.consecutive;
    for (const ok of outcomes) {
      if (ok) bucket.valid++;
      else bucket.invalid++;
      consecutive = ok ? 0 : consecutive + 1;
      if (this.limits.maxConsecutive !== undefined && consecutive > this.limits.maxConsecutive) {
        throw new DlqLimitExceeded(
          'max_consecutive',
          `more than ${this.limits.maxConsecutive} failed messages in a row`,
        );
      }
    }
    const valid = buckets.reduce((n, b) => n + b.valid, 0);
    const invalid = buckets.reduce((n, b) => n + b.invalid, 0);
    const total = valid + invalid;
    if (
      this.limits.maxInvalidRatio !== undefined &&
      total >= this.limits.minWindowMessages &&
      invalid / total > this.limits.maxInvalidRatio
    ) {
      throw new DlqLimitExceeded(
        'max_invalid_ratio',
        `${invalid} of the last ${total} messages (${((100 * invalid) / total).toFixed(1)}%) failed in ${this.limits.windowMs / 1000} s, above ${this.limits.maxInvalidRatio * 100}%`,
      );
    }
    return { buckets, consecutive };
  }

  /** Counts a committed chunk: the window its `check` returned. */
  apply(window: DlqWindow): void {
    this.window = window;
  }
}
