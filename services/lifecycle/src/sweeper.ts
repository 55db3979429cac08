import type { LifecycleCommand } from '@shoal/contracts';
import type { ScheduledJob } from '@shoal/kafka-runtime';

/**
 * The lease sweeper, a scheduled job (the runtime runs one at a time per service schema): claims
 * whose lease has lapsed get an `expire_claim` command (shoal.lifecycle-commands.v1, through the
 * outbox, keyed by issue id), which the decide consumer applies in the issue's order (a renew that
 * came first wins: the command is then a recorded no-op). The command id derives from the issue and
 * the claim generation (the job's coverage), so sweeps, re-runs after a crash and two members
 * produce the same id, and the decide consumer applies it once. `claim_sweeps` remembers what was
 * sent, so a lagging decide consumer is not sent it every sweep; its rows go once their claim has
 * ended. Up to `limit` claims per run, oldest lapse first.
 *
 * Blocks on: PostgreSQL (the run's transaction). Throws: what PostgreSQL throws (the runner retries).
 */

export interface SweeperOptions {
  /** The full name of the lifecycle-commands topic (namespace included). */
  lifecycleCommands: string;
  everyMs: number;
  limit?: number;
  /** The clock (tests move it). */
  now?: () => number;
}

export const SWEEPER_ACTOR = 'lifecycle-sweeper';

export function claimSweeper(options: SweeperOptions): ScheduledJob {
  const now = options.now ?? Date.now;
  return {
    name: 'claim-expiry',
    everyMs: options.everyMs,
    async run(tx, ctx) {
      const at = new Date(now()).toISOString();
      await tx.query(
        `DELETE FROM claim_sweeps s WHERE NOT EXISTS (
           SELECT 1 FROM issues i WHERE i.id = s.issue_id AND i.claim_generation = s.claim_generation
             AND i.claimed_by IS NOT NULL)`,
      );
      const { rows } = await tx.query<{ issue_id: number; claim_generation: number }>(
        `INSERT INTO claim_sweeps (issue_id, claim_generation, sent_at)
         SELECT id, claim_generation, $1::timestamptz FROM issues
         WHERE claim_expires_at <= $1::timestamptz AND deleted_at IS NULL AND NOT EXISTS (
           SELECT 1 FROM claim_sweeps s WHERE s.issue_id = issues.id
             AND s.claim_generation = issues.claim_generation)
         ORDER BY claim_expires_at, id LIMIT $2
         ON CONFLICT DO NOTHING RETURNING issue_id, claim_generation`,
        [at, options.limit ?? 500],
      );
      for (const { issue_id, claim_generation } of rows)
        ctx.emit(`${issue_id}:${claim_generation}`, (commandId) => {
          const command: LifecycleCommand = {
            command_id: commandId,
            command: 'expire_claim',
            origin: 'system',
            issue_id,
            actor: SWEEPER_ACTOR,
            issued_at: at,
            claim_generation,
          };
          return {
            topic: options.lifecycleCommands,
            key: String(issue_id),
            value: command as unknown as Record<string, unknown>,
          };
        });
    },
  };
}
