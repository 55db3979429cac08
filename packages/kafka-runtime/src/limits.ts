import type { DlqLimits } from './policy.js';

export class DlqLimitExceeded extends Error {
  constructor(
    readonly limit: 'max_invalid_ratio' | 'max_consecutive',
    detail: string,
  ) {
    super(
      `dead-letter limit ${limit} crossed: ${detail}; stopping instead of dead-lettering everything`,
    );
    this.name = 'DlqLimitExceeded';
  }
}

/**
 * Arroyo-style dead-letter limits over a sliding time window (buckets of a second). Outcomes are
 * counted before a batch commits, so the batch that crosses a limit is not committed.
 */
export class DlqLimiter {
  private buckets: { second: number; valid: number; invalid: number }[] = [];
  private consecutive = 0;

  constructor(
    private readonly limits: DlqLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Outcomes in message order (true = applied); throws when the batch would cross a limit. */
  record(outcomes: boolean[]): void {
    const second = Math.floor(this.now() / 1000);
    const windowStart = second - Math.ceil(this.limits.windowMs / 1000);
    const buckets = this.buckets.filter((b) => b.second > windowStart);
    let bucket = buckets.find((b) => b.second === second);
    if (!bucket) buckets.push((bucket = { second, valid: 0, invalid: 0 }));
    let consecutive = this.consecutive;
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
    this.buckets = buckets;
    this.consecutive = consecutive;
  }
}
