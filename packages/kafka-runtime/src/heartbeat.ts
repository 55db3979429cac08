import os from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Pool } from '@shoal/db';
import { readiness, type Check, type Logger } from '@shoal/observability';

/**
 * Each running instance's heartbeat, for `shoal status`: every `everyMs` (5 s) it runs the checks
 * `/readyz` runs and upserts its row in `instance_heartbeats` (host, pid, start, beat, ready, each
 * check's status, and the error tracker's line, which never decides readiness); stopping deletes
 * the row, and each beat prunes rows of instances that stopped beating a day ago (they died).
 *
 * Blocks on: the checks (each down after `everyMs` without an answer) and PostgreSQL, on a timer
 * of its own; one beat at a time.
 * Throws: never; a beat that fails is logged at warn and the next one tries again (an instance
 * whose PostgreSQL is down cannot say so there: its row goes stale, which status shows).
 * Rebalance: not involved; one row per process, whatever it owns.
 */

export interface Heartbeat {
  instanceId: string;
  /** Beats once now (the first beat is also sent at start). */
  beat(): Promise<void>;
  stop(): Promise<void>;
}

export function startHeartbeat(options: {
  pool: Pool;
  group: string;
  checks: Record<string, Check>;
  logger: Logger;
  everyMs?: number;
}): Heartbeat {
  const { pool, group, checks, logger } = options;
  const everyMs = options.everyMs ?? 5_000;
  const instanceId = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const startedAt = new Date();
  let beating: Promise<void> | undefined;
  // a check that hangs (a client retrying a server that is down) is down after an interval, so
  // the beat is written on time and says so
  const bounded = Object.fromEntries(
    Object.entries(checks).map(([name, check]) => [
      name,
      () =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`no answer within ${everyMs} ms`)),
            everyMs,
          );
          check()
            .then(resolve, reject)
            .finally(() => clearTimeout(timer));
        }),
    ]),
  );

  async function beatOnce(): Promise<void> {
    const { ready, body } = await readiness(bounded);
    await pool.query(
      `INSERT INTO instance_heartbeats
         (instance_id, consumer_group, host, pid, started_at, beat_at, every_ms, ready, checks)
       VALUES ($1, $2, $3, $4, $5, now(), $6, $7, $8)
       ON CONFLICT (instance_id) DO UPDATE SET beat_at = now(), ready = EXCLUDED.ready,
         checks = EXCLUDED.checks`,
      [
        instanceId,
        group,
        os.hostname(),
        process.pid,
        startedAt,
        everyMs,
        ready,
        JSON.stringify({ ...body.checks, error_tracker: body.error_tracker }),
      ],
    );
    await pool.query(`DELETE FROM instance_heartbeats WHERE beat_at < now() - interval '1 day'`);
  }

  /** One beat at a time: a timer firing while one is written waits for it, never queues another. */
  const beat = () =>
    (beating ??= beatOnce()
      .catch((error: unknown) => {
        logger.warn({ err: error }, 'heartbeat not written; the next one tries again');
      })
      .finally(() => {
        beating = undefined;
      }));
  void beat();
  const timer = setInterval(() => void beat(), everyMs);
  timer.unref();

  return {
    instanceId,
    beat,
    async stop() {
      clearInterval(timer);
      await beating;
      await pool
        .query('DELETE FROM instance_heartbeats WHERE instance_id = $1', [instanceId])
        .catch((error: unknown) => logger.warn({ err: error }, 'heartbeat row not removed'));
    },
  };
}
