import { deleteInBatches, type Pruned, type ServiceRetention } from '@shoal/kafka-runtime';

/**
 * Regression's own tables' retention, run by the runtime's pruner: a settled regression record
 * (confirmed or superseded) is kept 30 days for the audit and the flapping window, then dropped.
 * Proposed ones are never dropped here: unanswered past the deadline they are orphans, which
 * `shoal orphans` reports and cleans up with an audit row.
 */
export const regressionRetention: ServiceRetention = async (pool, batch): Promise<Pruned> => ({
  regressions: await deleteInBatches(
    pool,
    'regressions',
    `SELECT ctid FROM regressions WHERE settled_at < now() - interval '30 days' LIMIT $1`,
    [],
    batch,
  ),
});
