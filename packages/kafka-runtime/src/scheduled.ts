import { assertValid, topicKeyOf } from '@shoal/contracts';
import type { Pool, PoolClient } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import { Backoff, WakeableSleep } from './backoff.js';
import { asError, classify } from './errors.js';
import { eventId, type OutgoingEvent } from './message.js';
import { writeOutbox, type EncodedOutboxEvent } from './store.js';

/**
 * Scheduled work: a transaction on a timer, for outgoing events no incoming message causes (a
 * grouping flush, a lease-expiry sweep, re-driving held messages), with a batch's guarantees.
 *
 * One runner at a time per service schema and job: a member runs a job only while it holds a
 * PostgreSQL session advisory lock keyed by the schema and the job's name, and it runs the job's
 * transaction on the very connection that holds the lock. When that connection dies (process
 * killed, backend terminated, network lost), the server aborts the transaction and frees the lock
 * in one step, so another member's next try takes over, and no two runs' transactions are ever open
 * at once.
 *
 * Once per run: the job's `ctx.emit` events are written to the outbox in its transaction (the relay
 * publishes them). Their ids derive from what the run covers (`coverage`), never from when it ran, so
 * a run killed anywhere and run again writes the same events with the same ids, once committed.
 *
 * Failures, decided by `classify`: a transient one (connection lost, serialization failure,
 * timeout) rolls the run back and retries it with backoff; a permanent one rolls it back, is logged
 * at error and counted, and the job runs again at its next tick. Neither stops the service.
 */

export interface ScheduledContext {
  /**
   * Queue an event for the outbox, covering `coverage`: what the run reports, stable across re-runs
   * (e.g. a group id and the range of times seen it reports). Its id is
   * `eventId(group, 'scheduled:<job>:<coverage>', n)`, n counting the run's earlier events with the
   * same coverage; `build` receives it. Validated against its topic's schema here.
   */
  emit(coverage: string, build: (eventId: string) => OutgoingEvent): void;
  logger: Logger;
}

export interface ScheduledJob {
  /** Unique in the service: it keys the lock and the event ids. */
  name: string;
  /** Pause between runs (and between a non-holder's tries to take the job over). */
  everyMs: number;
  /**
   * One run, in one transaction: read and write through `tx` and `ctx.emit` only. Like a handler it
   * must not commit, roll back, or keep in memory what the database does not hold; it may be run
   * again on the same state after a crash.
   */
  run(tx: PoolClient, ctx: ScheduledContext): Promise<void>;
}

export type ScheduledHook = 'scheduled:before-commit';

export interface ScheduledOptions {
  jobs: ScheduledJob[];
  /** The consumer group: keys event ids as a handler's do. */
  group: string;
  /** The service's pool (its `search_path` is the service schema); each job holds one connection of it. */
  pool: Pool;
  logger: Logger;
  /** Called after a run committed events (the relay's `notify`). */
  notify?: () => void;
  /** Fault injection for tests (crash-at.ts). */
  hook?: (point: ScheduledHook) => void;
}

export interface RunningScheduled {
  /** Lets a run in progress finish, then gives every job up (its connection closed, the lock with it). */
  stop(): Promise<void>;
}

// with hashtext(schema/job), the two-int advisory lock key; the relay uses a class of its own. Two
// names whose hashes collide only take turns.
const SCHEDULED_LOCK_CLASS = 0x5ced_0b5e;

export function startScheduled(options: ScheduledOptions): RunningScheduled {
  const names = options.jobs.map((j) => j.name);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) throw new Error(`scheduled job ${repeated} is declared twice`);
  if (names.includes('')) throw new Error('a scheduled job needs a name');
  for (const job of options.jobs)
    if (!(job.everyMs > 0)) throw new Error(`scheduled job ${job.name}: everyMs must be positive`);
  const runners = options.jobs.map((job) => new JobRunner(job, options));
  return { stop: () => Promise.all(runners.map((r) => r.stop())).then(() => undefined) };
}

class JobRunner {
  /** The connection holding the job's lock; the job's transactions run on it. */
  private holder?: PoolClient;
  private running = true;
  private readonly sleeper = new WakeableSleep();
  private readonly loop: Promise<void>;
  private readonly backoff = new Backoff();
  private readonly labels: { group: string; job: string };

  constructor(
    private readonly job: ScheduledJob,
    private readonly options: ScheduledOptions,
  ) {
    this.labels = { group: options.group, job: job.name };
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.sleeper.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let delayMs = this.job.everyMs;
      try {
        if (await this.hold()) {
          await this.runOnce();
          metrics.scheduledRuns.inc({ ...this.labels, outcome: 'committed' });
          this.backoff.reset(this.job.name);
        }
      } catch (error) {
        delayMs = this.failed(error);
      }
      if (this.running) await this.sleeper.sleep(delayMs);
    }
    this.letGo();
  }

  /** Whether this member holds the job's lock now, taking it when it is free. */
  private async hold(): Promise<boolean> {
    if (this.holder) return true;
    const client = await this.options.pool.connect();
    try {
      const { rows } = await client.query<{ ok: boolean }>(
        `SELECT pg_try_advisory_lock($1, hashtext(current_schema() || '/' || $2)) AS ok`,
        [SCHEDULED_LOCK_CLASS, this.job.name],
      );
      if (!rows[0]!.ok) {
        client.release();
        return false;
      }
    } catch (error) {
      client.release(true);
      throw error;
    }
    this.holder = client;
    metrics.scheduledHolder.set(this.labels, 1);
    this.options.logger.info({ job: this.job.name }, 'scheduled job taken: this member runs it');
    return true;
  }

  /** Closes the holding connection, which frees the lock (it is never returned to the pool holding it). */
  private letGo(): void {
    if (!this.holder) return;
    this.holder.release(true);
    this.holder = undefined;
    metrics.scheduledHolder.set(this.labels, 0);
  }

  private async runOnce(): Promise<void> {
    const tx = this.holder!;
    const { group, logger } = this.options;
    const events: EncodedOutboxEvent[] = [];
    const ordinals = new Map<string, number>();
    const ctx: ScheduledContext = {
      logger,
      emit: (coverage, build) => {
        const ordinal = ordinals.get(coverage) ?? 0;
        ordinals.set(coverage, ordinal + 1);
        const id = eventId(group, `scheduled:${this.job.name}:${coverage}`, ordinal);
        const event = build(id);
        const key = topicKeyOf(event.topic);
        if (!key) throw new Error(`emit: ${event.topic} is not a Shoal topic`);
        assertValid(key, event.value);
        events.push({
          eventId: id,
          topic: event.topic,
          key: event.key,
          payload: event.value,
          headers: event.headers ?? {},
        });
      },
    };
    try {
      await tx.query('BEGIN');
      await this.job.run(tx, ctx);
      await writeOutbox(tx, events, true); // ctx.emit validated each
      this.options.hook?.('scheduled:before-commit');
      await tx.query('COMMIT');
    } catch (error) {
      // the rollback answering proves the session, and so the lock, is still this member's
      await tx.query('ROLLBACK').catch(() => this.letGo());
      throw error;
    }
    if (events.length > 0) this.options.notify?.();
  }

  /** Logs and counts a failed run (or try to take the job); returns how long to wait before the next. */
  private failed(error: unknown): number {
    const job = this.job.name;
    const classified = classify(error);
    metrics.scheduledRuns.inc({ ...this.labels, outcome: classified.kind });
    if (classified.kind === 'transient') {
      const { delayMs, attempt } = this.backoff.next(job);
      this.options.logger.warn(
        { job, attempt, delayMs, err: error, holding: this.holder !== undefined },
        'scheduled run failed transiently; retrying',
      );
      return delayMs;
    }
    const err = asError(error);
    this.options.logger.error(
      { job, err, errorClass: err.name, reason: classified.reason },
      'scheduled run failed permanently; rolled back, next run at the next tick',
    );
    return this.job.everyMs;
  }
}
