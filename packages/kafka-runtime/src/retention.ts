import { DLQ_RETENTION_MS } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import { metrics, type Logger } from '@shoal/observability';
import { classify } from './errors.js';

/**
 * Bounded retention (DESIGN.md semantics 5): how long each table of the runtime keeps a row, and
 * the pruner that deletes what is older, run periodically by the consumer beside its batches.
 *
 * | table                                 | kept                                                    |
 * | ------------------------------------- | ------------------------------------------------------- |
 * | `processed_messages`, `applied`       | the re-send window (`SHOAL_LEDGER_RESEND_WINDOW_HOURS`) |
 * | `processed_messages`, other kinds     | the dead letters' retention (14 days): replays known    |
 * | `outbox`                              | a day after it was published (never before)             |
 * | `outbox_failures`, `message_failures` | the dead letters' retention                             |
 * | `message_rejections`                  | the dead letters' retention (a copy may be in the DLQ)  |
 * | `offset_resets`                       | for good: the operators' audit, one row per reset       |
 *
 * A service adds its own tables with `ServiceRetention` (grouping: creation quotas, noise-held
 * occurrences). Rows that carry a deadline of their own (held or parked messages) are not pruned
 * here: one that expires is dead-lettered with its reason by the runtime, never deleted.
 *
 * Deletes go in batches (`PruneBatch.size` rows), each its own statement (no long transaction, few
 * locks), until no row is older than the cutoff taken when the run began: a run ends however fast
 * rows arrive, and the next picks up what expired meanwhile; then the table is vacuumed. Not time
 * partitions: a partitioned table's unique index must include the partition key, so the ledger's
 * uniqueness on the message id could not span partitions (bench/ledger.ts measures that batched
 * deletes keep up).
 */

/** Rows deleted per table, by name. */
export type Pruned = Record<string, number>;

/** A service's own tables' retention, run by the runtime's pruner with its own (`deleteInBatches`). */
export type ServiceRetention = (pool: Queryable, batch: PruneBatch) => Promise<Pruned>;

/** How a run deletes: rows per statement, and a signal that ends the run between statements. */
export interface PruneBatch {
  size: number;
  signal?: AbortSignal;
}

type Queryable = { query: PoolClient['query'] };

const DAY_MS = 24 * 3_600_000;

/**
 * Deletes the rows `select` names (a query returning ctids of at most $1 rows; further parameters
 * follow) from `table`, batch after batch until a batch comes back short or the signal aborts; then
 * vacuums the table, so the space is reused whether or not autovacuum runs (the local stack's
 * PostgreSQL runs without it) — deleted rows alone would let the table grow at the ingest rate.
 */
export async function deleteInBatches(
  pool: Queryable,
  table: string,
  select: string,
  params: unknown[],
  batch: PruneBatch,
): Promise<number> {
  let deleted = 0;
  while (!batch.signal?.aborted) {
    const { rowCount } = await pool.query(
      `DELETE FROM ${table} WHERE ctid = ANY(ARRAY(${select}))`,
      [batch.size, ...params],
    );
    deleted += rowCount ?? 0;
    if ((rowCount ?? 0) < batch.size) break;
  }
  if (deleted > 0) await pool.query(`VACUUM (SKIP_LOCKED) ${table}`);
  return deleted;
}

/** One pruning run over the runtime's tables; `resendWindowMs` is the applied ids' retention. */
export async function prune(
  pool: Queryable,
  resendWindowMs: number,
  batch: PruneBatch = { size: 10_000 },
): Promise<Pruned> {
  const { rows } = await pool.query<{ applied: Date; kept: Date; published: Date }>(
    `SELECT now() - make_interval(secs => $1) AS applied, now() - make_interval(secs => $2) AS kept,
            now() - make_interval(secs => $3) AS published`,
    [resendWindowMs / 1000, DLQ_RETENTION_MS / 1000, DAY_MS / 1000],
  );
  const cutoff = rows[0]!;
  const older = (table: string, where: string, before: Date) =>
    deleteInBatches(
      pool,
      table,
      `SELECT ctid FROM ${table} WHERE ${where} < $2 LIMIT $1`,
      [before],
      batch,
    );
  return {
    ledgerApplied: await older(
      'processed_messages',
      `kind = 'applied' AND processed_at`,
      cutoff.applied,
    ),
    ledgerDeadLettered: await older(
      'processed_messages',
      `kind <> 'applied' AND processed_at`,
      cutoff.kept,
    ),
    outbox: await older('outbox', 'published_at', cutoff.published),
    outboxFailures: await older('outbox_failures', 'failed_at', cutoff.kept),
    messageFailures: await older('message_failures', 'failed_at', cutoff.kept),
    messageRejections: await older('message_rejections', 'rejected_at', cutoff.kept),
  };
}

/**
 * Runs `prune` (and the service's retention) now and then every `everyMs`, one run at a time, on
 * the pool beside the batches (it holds one connection per statement, no lock a batch waits for
 * long). A failed run is classified, logged and counted (`shoal_prune_failed_total`), and the next
 * run tries again.
 */
export function startPruning(options: {
  pool: Queryable;
  group: string;
  logger: Logger;
  resendWindowMs: number;
  everyMs: number;
  service?: ServiceRetention;
  batchSize?: number;
}): { stop(): Promise<void> } {
  const { pool, group, logger, everyMs } = options;
  const stopping = new AbortController();
  const batch: PruneBatch = { size: options.batchSize ?? 10_000, signal: stopping.signal };
  let timer: NodeJS.Timeout | undefined;
  const run = async () => {
    try {
      const pruned: Pruned = {
        ...(await prune(pool, options.resendWindowMs, batch)),
        ...(options.service ? await options.service(pool, batch) : {}),
      };
      for (const [table, n] of Object.entries(pruned))
        if (n > 0) metrics.pruned.inc({ group, table }, n);
      if (Object.values(pruned).some((n) => n > 0)) logger.info({ pruned }, 'pruned');
    } catch (error) {
      const classified = classify(error);
      metrics.pruneFailed.inc({ group, kind: classified.kind });
      logger[classified.kind === 'transient' ? 'warn' : 'error'](
        { err: error, kind: classified.kind },
        'pruning failed; the next run tries again',
      );
    }
  };
  // one run at a time: the next is scheduled when one ends
  let running: Promise<void>;
  const runThenSchedule = async () => {
    await run();
    if (stopping.signal.aborted) return;
    timer = setTimeout(() => (running = runThenSchedule()), everyMs).unref();
  };
  running = runThenSchedule();
  return {
    // ends the run in progress after its current statement
    stop: async () => {
      stopping.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
