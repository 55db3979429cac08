/** Exponential backoff with full jitter, per key (a partition); reset after a success. */
export class Backoff {
  private readonly attempts = new Map<string, number>();
  constructor(
    private readonly baseMs = 200,
    private readonly maxMs = 10_000,
    private readonly random: () => number = Math.random,
  ) {}

  next(key: string): { delayMs: number; attempt: number } {
    const attempt = (this.attempts.get(key) ?? 0) + 1;
    this.attempts.set(key, attempt);
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** (attempt - 1));
    return { delayMs: Math.round(ceiling / 2 + (this.random() * ceiling) / 2), attempt };
  }

  reset(key: string): void {
    this.attempts.delete(key);
  }
}

/** A sleep that `wake()` ends early (a commit that wrote outbox rows, or a stop). */
export class WakeableSleep {
  private wakeUp?: () => void;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  wake(): void {
    this.wakeUp?.();
  }
}
