import type { Pool, PoolClient } from '@shoal/db';
import type { Logger } from '@shoal/observability';
import pg from 'pg';

/**
 * Replies that wait for their command's outcome. The decide consumer records each outcome in
 * `lifecycle_commands` with its batch; a trigger (migration 1766240000000) NOTIFYs the decided
 * command ids on `<schema>.lifecycle_commands` at commit. One LISTEN connection wakes the
 * waiters those ids name, and reads their outcomes in one query. NOTIFY is lost while nobody
 * listens (a reconnect, a dropped connection), so every `pollMs` the outcomes of all commands
 * still waited for are read too: a lost notification costs at most that much latency, never an
 * answer. A waiter registered before its command is produced cannot miss its outcome (a retry
 * reads the outcome already recorded before it registers).
 *
 * `wait` resolves with the outcome, or undefined when `ms` passes first (the reply is then 202).
 */
export class OutcomeWaiter<O> {
  private readonly waiting = new Map<string, Set<(outcome: O) => void>>();
  private listener?: PoolClient;
  private poller?: NodeJS.Timeout;
  private closed = false;
  private channel = '';
  /** Ids to read outcomes of once the read in flight (`reading`) is done. */
  private readonly toRead = new Set<string>();
  private reading?: Promise<void>;

  constructor(
    private readonly options: {
      /** Lifecycle's pool: one of its connections is held for LISTEN while the waiter runs. */
      pool: Pool;
      pollMs: number;
      logger: Logger;
      /** The outcomes recorded for these command ids (absent: not decided yet). */
      read: (ids: string[]) => Promise<Map<string, O>>;
    },
  ) {}

  async start(): Promise<void> {
    const schema = (await this.options.pool.query<{ s: string }>('SELECT current_schema() AS s'))
      .rows[0]!.s;
    this.channel = `${schema}.lifecycle_commands`;
    await this.listen();
    this.schedulePoll();
  }

  /** Registers interest in `id`; call before producing the command. */
  register(id: string): { outcome: (ms: number) => Promise<O | undefined>; cancel: () => void } {
    let resolveOutcome!: (outcome: O) => void;
    const decided = new Promise<O>((resolve) => (resolveOutcome = resolve));
    const set = this.waiting.get(id) ?? new Set();
    set.add(resolveOutcome);
    this.waiting.set(id, set);
    const cancel = () => {
      set.delete(resolveOutcome);
      if (set.size === 0 && this.waiting.get(id) === set) this.waiting.delete(id);
    };
    return {
      cancel,
      outcome: async (ms: number) => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<undefined>(
          (resolve) => (timer = setTimeout(() => resolve(undefined), ms)),
        );
        try {
          return await Promise.race([decided, timedOut]);
        } finally {
          clearTimeout(timer);
          cancel();
        }
      },
    };
  }

  /**
   * Reads the outcomes of those of `ids` still waited for. One read at a time: ids that come while
   * it runs (more notifications, the poll) are read together by the next, so a burst of
   * notifications costs a few reads, not one each.
   */
  private deliver(ids: string[]): Promise<void> {
    for (const id of ids) if (this.waiting.has(id)) this.toRead.add(id);
    if (this.reading || this.toRead.size === 0) return this.reading ?? Promise.resolve();
    const reading = (async () => {
      try {
        while (this.toRead.size > 0) {
          const wanted = [...this.toRead];
          this.toRead.clear();
          try {
            const outcomes = await this.options.read(wanted);
            for (const [id, outcome] of outcomes) {
              for (const resolve of this.waiting.get(id) ?? []) resolve(outcome);
              this.waiting.delete(id);
            }
          } catch (error) {
            this.options.logger.warn(
              { err: error },
              'reading command outcomes failed; the poll retries',
            );
          }
        }
      } finally {
        // in the same turn as the last look at toRead: an id added after it starts a read of its own
        this.reading = undefined;
      }
    })();
    this.reading = reading;
    return reading;
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    let client: PoolClient;
    try {
      client = await this.options.pool.connect();
    } catch (error) {
      this.options.logger.warn(
        { err: error },
        'LISTEN for command outcomes failed; retrying, polling meanwhile',
      );
      this.retryListen();
      return;
    }
    const lost = (error?: Error) => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.removeAllListeners('notification');
      // a broken connection is destroyed, not returned to the pool
      client.release(error ?? new Error('LISTEN connection ended'));
      this.retryListen();
    };
    client.on('error', lost);
    client.on('notification', (message) => {
      if (message.channel === this.channel && message.payload)
        void this.deliver(message.payload.split(','));
    });
    this.listener = client;
    try {
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
      // what was decided while nobody listened
      void this.deliver([...this.waiting.keys()]);
    } catch (error) {
      this.options.logger.warn(
        { err: error },
        'LISTEN for command outcomes failed; retrying, polling meanwhile',
      );
      lost(error as Error);
    }
  }

  private retryListen(): void {
    if (!this.closed)
      setTimeout(() => void this.listen(), Math.min(this.options.pollMs, 1000)).unref();
  }

  private schedulePoll(): void {
    if (this.closed) return;
    this.poller = setTimeout(() => {
      void this.deliver([...this.waiting.keys()]).finally(() => this.schedulePoll());
    }, this.options.pollMs);
    this.poller.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.poller);
    const client = this.listener;
    this.listener = undefined;
    if (client) {
      await client.query(`UNLISTEN ${pg.escapeIdentifier(this.channel)}`).catch(() => undefined);
      client.removeAllListeners('notification');
      client.release();
    }
  }
}
