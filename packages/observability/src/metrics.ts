import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric Shoal exports, declared once (as Arroyo's metric_defs.py does). */
export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry, prefix: 'shoal_process_' });

export const metrics = {
  /** Messages whose effects were committed (duplicates and failures not included). */
  processed: new Counter({
    name: 'shoal_messages_processed_total',
    help: 'Messages applied and committed, by consumer group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metricsRegistry],
  }),
  /** Messages not applied because of a permanent failure, by reason code, entity and what the policy did. */
  failed: new Counter({
    name: 'shoal_messages_failed_total',
    help: 'Messages skipped or dead-lettered, by reason code, entity (stale_reference) and action (dlq|skip)',
    labelNames: ['group', 'topic', 'reason', 'entity', 'action'] as const,
    registers: [metricsRegistry],
  }),
  /** Messages the handler refused (`ctx.reject`): applied, their outcome recorded; not failures. */
  rejected: new Counter({
    name: 'shoal_messages_rejected_total',
    help: 'Messages the domain refused (recorded outcome, not a failure), by group, topic and rejection reason',
    labelNames: ['group', 'topic', 'reason'] as const,
    registers: [metricsRegistry],
  }),
  /** Keys of an ordered topic parked behind a dead-lettered head (set after each chunk that changed them). */
  parkedKeys: new Gauge({
    name: 'shoal_parked_keys',
    help: 'Keys of an ordered topic waiting behind a dead-lettered message (replay or discard releases them), by group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metricsRegistry],
  }),
  /** Messages stored behind parked keys (SHOAL_MAX_PARKED_MESSAGES stops the consumer past a ceiling). */
  parkedMessages: new Gauge({
    name: 'shoal_parked_messages',
    help: 'Messages stored in PostgreSQL behind a parked key, applied in order when it is released, by group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metricsRegistry],
  }),
  /** Messages held for an entity never announced (DESIGN.md semantics 7), each time one is held. */
  held: new Counter({
    name: 'shoal_messages_held_total',
    help: 'Messages held until the entity they name is announced (or their deadline passes), by group, topic and entity kind',
    labelNames: ['group', 'topic', 'entity'] as const,
    registers: [metricsRegistry],
  }),
  /** Messages waiting in held_messages (set after each chunk or re-drive that held any). */
  heldMessages: new Gauge({
    name: 'shoal_held_messages',
    help: 'Messages stored in PostgreSQL waiting for an entity to be announced, by group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metricsRegistry],
  }),
  /** Messages recognised as already processed (replays, redeliveries) and not applied again. */
  duplicates: new Counter({
    name: 'shoal_messages_duplicate_total',
    help: 'Messages whose id was already in the processed ledger, by group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metricsRegistry],
  }),
  /** Batches retried in place after a transient failure (database or broker unavailable, serialization failure). */
  transientRetries: new Counter({
    name: 'shoal_transient_retries_total',
    help: 'Batches paused and retried after a transient failure, by group and error class',
    labelNames: ['group', 'error'] as const,
    registers: [metricsRegistry],
  }),
  /** 1 while a partition's transient failure has outlasted SHOAL_TRANSIENT_ESCALATE_SECONDS (it is still retried). */
  transientEscalated: new Gauge({
    name: 'shoal_transient_escalated',
    help: 'Partitions stuck on a transient failure for longer than the escalation deadline (1 while stuck), by group, topic and partition',
    labelNames: ['group', 'topic', 'partition'] as const,
    registers: [metricsRegistry],
  }),
  /** 1 while a partition is halted on an offset mismatch, waiting for `shoal offsets reset`. */
  partitionHalted: new Gauge({
    name: 'shoal_partition_halted',
    help: 'Partitions halted because PostgreSQL offsets do not match the log (topic re-created, Kafka reset, database restored), by group, topic and partition',
    labelNames: ['group', 'topic', 'partition'] as const,
    registers: [metricsRegistry],
  }),
  batchSeconds: new Histogram({
    name: 'shoal_batch_duration_seconds',
    help: 'Time to apply and commit one batch (decode to commit), by group',
    labelNames: ['group'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [metricsRegistry],
  }),
  lag: new Gauge({
    name: 'shoal_consumer_lag',
    help: 'Messages between the last applied offset and the partition high watermark',
    labelNames: ['group', 'topic', 'partition'] as const,
    registers: [metricsRegistry],
  }),
  outboxBacklog: new Gauge({
    name: 'shoal_outbox_backlog',
    help: 'Outbox events written but not yet published',
    registers: [metricsRegistry],
  }),
  ingestRequests: new Counter({
    name: 'shoal_ingest_requests_total',
    help: 'Ingest gateway requests, by route and HTTP status',
    labelNames: ['route', 'status'] as const,
    registers: [metricsRegistry],
  }),
  ingestMessages: new Counter({
    name: 'shoal_ingest_messages_total',
    help: 'Messages the ingest gateway had acknowledged by the broker, by topic',
    labelNames: ['topic'] as const,
    registers: [metricsRegistry],
  }),
  outboxPublished: new Counter({
    name: 'shoal_outbox_published_total',
    help: 'Outbox events published by the relay, by topic',
    labelNames: ['topic'] as const,
    registers: [metricsRegistry],
  }),
  /** Outbox events the relay set aside (row in `outbox_failures`): not encodable, or refused by the broker for good. */
  outboxFailed: new Counter({
    name: 'shoal_outbox_failed_total',
    help: 'Outbox events set aside by the relay because they cannot be encoded or produced, by topic and error class',
    labelNames: ['topic', 'error_class'] as const,
    registers: [metricsRegistry],
  }),
  /** Scheduled-job runs, by outcome: committed, transient (retried with backoff) or permanent (rolled back, logged). */
  scheduledRuns: new Counter({
    name: 'shoal_scheduled_runs_total',
    help: 'Scheduled-job runs and tries to take a job, by group, job and outcome (committed|transient|permanent)',
    labelNames: ['group', 'job', 'outcome'] as const,
    registers: [metricsRegistry],
  }),
  /** 1 while this process holds the job's lock (the one member that runs it). */
  scheduledHolder: new Gauge({
    name: 'shoal_scheduled_holder',
    help: 'Scheduled jobs this process runs (1 while it holds the job lock), by group and job',
    labelNames: ['group', 'job'] as const,
    registers: [metricsRegistry],
  }),
  /** Rows deleted by retention (the runtime's tables and a service's own), by group and table. */
  pruned: new Counter({
    name: 'shoal_pruned_rows_total',
    help: 'Rows deleted because they outlived their retention, by consumer group and table',
    labelNames: ['group', 'table'] as const,
    registers: [metricsRegistry],
  }),
  /** Pruning runs that failed (the next run tries again), by group and classified kind. */
  pruneFailed: new Counter({
    name: 'shoal_prune_failed_total',
    help: 'Pruning runs that failed, by consumer group and kind (transient or permanent, by classify)',
    labelNames: ['group', 'kind'] as const,
    registers: [metricsRegistry],
  }),
  groupingHeldBack: new Counter({
    name: 'shoal_grouping_held_back_total',
    help: 'Occurrences held back instead of creating a group, by reason (noise threshold or new-group rate limit)',
    labelNames: ['reason'] as const,
    registers: [metricsRegistry],
  }),
  groupingDiscarded: new Counter({
    name: 'shoal_grouping_discarded_total',
    help: 'Occurrences dropped because their fingerprint was discarded (delete-and-discard), by project',
    labelNames: ['project'] as const,
    registers: [metricsRegistry],
  }),
  groupingNoiseExpired: new Counter({
    name: 'shoal_grouping_noise_expired_total',
    help: 'Held-back occurrences forgotten because their hash did not reach the noise threshold within the window',
    registers: [metricsRegistry],
  }),
  groupingStatusChangeNoops: new Counter({
    name: 'shoal_grouping_status_change_noops_total',
    help: 'Conditional status changes not applied because the group was not in the state they expected, by who decided them',
    labelNames: ['decided_by'] as const,
    registers: [metricsRegistry],
  }),
  regressionProposed: new Counter({
    name: 'shoal_regression_proposed_total',
    help: 'Regressions (kind regressed) and escalations (kind escalating) proposed to grouping, by the rule that decided them',
    labelNames: ['kind', 'decided_by'] as const,
    registers: [metricsRegistry],
  }),
  regressionStaleStatusChanges: new Counter({
    name: 'shoal_regression_stale_status_changes_total',
    help: 'status_changed events ignored by regression: not newer than the last applied for their group (a replay)',
    registers: [metricsRegistry],
  }),
};
