import type { Pool, PoolClient } from '@shoal/db';
import type { Logger } from '@shoal/observability';
import pg from 'pg';

/**
 * Replies that wait for their command's outcome. The decide consumer records each outcome in
 * `lifecycle_commands` with its batch; a trigger (migrations 1766240000000, 1766400300000) NOTIFYs
 * the transaction's id and the decided command ids on `<schema>.lifecycle_commands` at commit. One
 * LISTEN connection wakes the waiters those ids name: those whose outcome this process's decide
 * consumer handed over (`recorded`) in the transaction notified are answered from it; the others'
 * outcomes are read, in one query. NOTIFY is lost while nobody
 * listens (a reconnect, a dropped connection), so every `pollMs` the outcomes of all commands
 * still waited for are read too: a lost notification costs at most that much latency, never an
 * answer. A waiter registered before its command is produced cannot miss its outcome (a retry
 * reads the outcome already recorded before it registers).
 *
 * `wait` resolves with the outcome, or undefined when `ms` passes first (the reply is then 202).
 */
export class OutcomeWaiter<O> {
  private readonly waiting = new Map<string, Set<(outcome: O) => void>>();
  /**
   * Outcomes of waited-for commands that this process's decide consumer has decided, by the
   * transaction that decided them (`recorded`): used once a notification says that transaction
   * committed, instead of reading them back. A transaction rolled back never notifies; its entries
   * are replaced by the retry's, or go with their waiter.
   */
  private readonly decidedHere = new Map<string, { txid: string; outcome: () => O }>();
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
      if (set.size === 0 && this.waiting.get(id) === set) {
        this.waiting.delete(id);
        this.decidedHere.delete(id);
      }
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
   * Outcomes decided in this process by transaction `txid`, not yet committed: kept for the
   * commands waited for (`outcome` is called only for those, once the transaction's notification
   * comes).
   */
  recorded(txid: string, decided: Iterable<{ id: string; outcome: () => O }>): void {
    for (const { id, outcome } of decided)
      if (this.waiting.has(id)) this.decidedHere.set(id, { txid, outcome });
  }

  private settle(id: string, outcome: O): void {
    for (const resolve of this.waiting.get(id) ?? []) resolve(outcome);
    this.waiting.delete(id);
    this.decidedHere.delete(id);
  }

  /** A notification: `<txid>;<id>,<id>,…` (the ids alone before migration 1766400300000). */
  private notified(payload: string): void {
    const split = payload.indexOf(';');
    const txid = split < 0 ? undefined : payload.slice(0, split);
    const ids = payload.slice(split + 1).split(',');
    const unread: string[] = [];
    for (const id of ids) {
      const here = this.decidedHere.get(id);
      if (here && here.txid === txid && this.waiting.has(id)) this.settle(id, here.outcome());
      else unread.push(id);
    }
    void this.deliver(unread);
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
            for (const [id, outcome] of outcomes) this.settle(id, outcome);
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
    if (this.closed) {
      // closed while the connection was being made (a re-listen after a lost one): close() saw
      // no listener to give back, so this one goes back here, or the pool could never end
      client.release();
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
      if (message.channel === this.channel && message.payload) this.notified(message.payload);
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
