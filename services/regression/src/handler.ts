/**
 * Regression's domain logic over the runtime: one batch of one partition, in the runtime's
 * transaction. Group events keep the projection (groups' status, resolution and sequence; releases'
 * first-seen time) and, for each `occurrence_grouped` on a resolved or ignored group, decide
 * (`@shoal/regression-rules`). A regression is recorded as proposed and sent, through the outbox, as a conditional
 * status change (`expect`: still in the state decided on); grouping's answer settles it: its
 * `status_changed` confirms, its `status_change_noop` supersedes. One proposal per group and status
 * sequence, so a re-run, a redelivery or more occurrences before the answer propose nothing more.
 * Operators' commands (orphan cleanup) are applied by commands.ts.
 */
import type { EntityChange, GroupEvent, RegressionCommand, StatusChange } from '@shoal/contracts';
import { storableText, type PoolClient } from '@shoal/db';
import type { Handler, HandlerContext, Message } from '@shoal/kafka-runtime';
import { metrics } from '@shoal/observability';
import { applyCommands } from './commands.js';
import type { RegressionConfig } from './config.js';
import { currentReleaseAt, decide, type Decision, type Release } from '@shoal/regression-rules';
import { GroupRows, type GroupRow } from './groups.js';
import { ReleaseRows } from './releases.js';

export type RegressionMessage = GroupEvent | EntityChange | RegressionCommand;

export interface RegressionOptions extends RegressionConfig {
  /** The full name of the status-changes topic (namespace included). */
  statusChanges: string;
}

/** Sentry's GroupSubStatus: an unresolve of a resolved group is REGRESSED, of an ignored one ESCALATING. */
const SUBSTATUS = { regressed: 6, escalating: 2 } as const;
const STATUS_CODE = { unresolved: 0, resolved: 1, ignored: 2 } as const;
const HOUR_MS = 3_600_000;

export function regressionHandler(options: RegressionOptions): Handler<RegressionMessage> {
  return async (batch, tx, ctx) => {
    switch (batch[0]!.topicKey) {
      case 'groupEvents':
        return applyGroupEvents(
          batch as Message<GroupEvent>[],
          tx,
          ctx as HandlerContext<unknown>,
          options,
        );
      case 'entityChanges':
        return projectEntities(batch as Message<EntityChange>[], tx);
      case 'regressionCommands':
        return applyCommands(
          batch as Message<RegressionCommand>[],
          tx,
          ctx as HandlerContext<unknown>,
        );
      default:
        throw new Error(`regression does not read ${batch[0]!.topic}`);
    }
  };
}

interface Proposal {
  group_id: number;
  project_id: number;
  expected_sequence: number;
  expected_status: GroupRow['status'];
  resolution_id: number;
  kind: 'regressed' | 'escalating';
  occurrence_id: string;
  occurred_at: string;
  decided_by: Decision['decided_by'];
  why: string;
  change_id: string;
  flapping: boolean;
}

/** The occurrence's time for the rules: its event timestamp, else its detection time. */
const occurrenceTime = (e: GroupEvent) =>
  e.event_timestamp ??
  new Date((e.detection_time ?? Date.parse(e.occurred_at) / 1000) * 1000).toISOString();

async function applyGroupEvents(
  batch: Message<GroupEvent>[],
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
  options: RegressionOptions,
) {
  const groups = await GroupRows.lock(
    tx,
    batch.map((m) => m.value),
  );
  const releases = await ReleaseRows.load(tx, [...new Set(batch.map((m) => m.value.project_id))]);
  const proposals: Proposal[] = [];
  const occurrenceTimes = batch.flatMap((m) =>
    m.value.event_type === 'occurrence_grouped' ? [Date.parse(occurrenceTime(m.value))] : [],
  );
  const recent = new RecentRegressions(
    [...new Set(batch.map((m) => m.value.group_id))],
    options.flapping.windowSeconds * 1000,
    occurrenceTimes.reduce((a, b) => Math.min(a, b), Date.now()),
  );
  const settled = { confirmed: [] as string[], superseded: [] as string[] };

  for (const message of batch) {
    const event = message.value;
    switch (event.event_type) {
      case 'group_created':
        groups.created(event);
        break;
      case 'group_activity':
        groups.activity(event);
        break;
      case 'release_seen':
        if (event.release) releases.seen(event.project_id, event.release, event.occurred_at);
        break;
      case 'status_change_noop':
        if (event.change_id) settled.superseded.push(event.change_id);
        break;
      case 'status_changed': {
        if (event.decided_by === 'regression' && event.change_id)
          settled.confirmed.push(event.change_id);
        const resolution = event.resolution;
        // in_next_release without the release current then: regression's projection knows it
        if (resolution?.type === 'in_next_release' && !resolution.current_release_version)
          resolution.current_release_version = currentReleaseAt(
            releases.of(event.project_id),
            resolution.resolved_at,
          );
        if (!groups.statusChanged(event)) metrics.regressionStaleStatusChanges.inc();
        break;
      }
      case 'occurrence_grouped': {
        const proposal = await decideOccurrence(
          tx,
          message,
          groups,
          releases,
          proposals,
          recent,
          ctx,
          options,
        );
        if (proposal) proposals.push(proposal);
        break;
      }
    }
  }

  await groups.save(tx);
  await releases.save(tx);
  if (proposals.length) {
    const column = <T>(pick: (p: Proposal) => T) => proposals.map(pick);
    await tx.query(
      `INSERT INTO regressions (group_id, project_id, expected_sequence, expected_status, resolution_id, kind,
         occurrence_id, occurred_at, decided_by, why, change_id, flapping)
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[],
         $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::boolean[])`,
      [
        column((p) => p.group_id),
        column((p) => p.project_id),
        column((p) => p.expected_sequence),
        column((p) => p.expected_status),
        column((p) => p.resolution_id),
        column((p) => p.kind),
        column((p) => storableText(p.occurrence_id)),
        column((p) => p.occurred_at),
        column((p) => p.decided_by),
        column((p) => storableText(p.why)),
        column((p) => p.change_id),
        column((p) => p.flapping),
      ],
    );
  }
  const answers = Object.entries(settled).flatMap(([state, ids]) => ids.map((id) => [id, state]));
  if (answers.length)
    await tx.query(
      `UPDATE regressions r SET state = a.state, settled_at = now()
       FROM unnest($1::text[], $2::text[]) AS a(change_id, state)
       WHERE r.change_id = a.change_id AND r.state = 'proposed'`,
      [answers.map(([id]) => id), answers.map(([, state]) => state)],
    );
  for (const p of proposals)
    metrics.regressionProposed.inc({ kind: p.kind, decided_by: p.decided_by });
}

/** Decides one occurrence on its group; a regression (or escalation) becomes a proposal and a status change. */
async function decideOccurrence(
  tx: PoolClient,
  message: Message<GroupEvent>,
  groups: GroupRows,
  releases: ReleaseRows,
  proposals: Proposal[],
  recent: RecentRegressions,
  ctx: HandlerContext<unknown>,
  options: RegressionOptions,
): Promise<Proposal | undefined> {
  const event = message.value;
  const group = groups.get(event.group_id);
  // a group the projection never saw created (a log that starts later) or one deleted: nothing to decide on
  if (!group || group.deleted_at || group.status === 'unresolved') return undefined;
  const at = occurrenceTime(event);
  const ignoredRate =
    group.status === 'ignored'
      ? {
          occurrences_since_ignored: group.occurrences_since_ignored,
          rate_before_per_hour: group.rate_before_per_hour,
          occurrences_last_hour:
            group.hour_started && Date.parse(at) - Date.parse(group.hour_started) < HOUR_MS
              ? group.occurrences_this_hour
              : 0,
        }
      : {};
  if (groups.hasProposal(group)) {
    groups.countIgnored(group, at);
    return undefined;
  }
  // releases and commits are stored as storableText: compare them the same way
  const resolution = group.resolution && {
    ...group.resolution,
    release: storableText(group.resolution.release),
    current_release_version: storableText(group.resolution.current_release_version),
    commit: storableText(group.resolution.commit),
  };
  const decision = decide(
    { status: group.status, resolution, ignore: group.ignore, ...ignoredRate },
    { release: storableText(event.release ?? null), timestamp: at },
    releases.of(group.project_id),
    options.decide,
  );
  groups.countIgnored(group, at);
  if (!decision.regressed) return undefined;

  const kind = group.status === 'resolved' ? 'regressed' : 'escalating';
  const flapping =
    kind === 'regressed' &&
    (await recent.within(tx, group.id, at, proposals)) >= options.flapping.limit;
  let changeId = '';
  ctx.emit(message, (eventId) => {
    changeId = eventId;
    const fingerprint = group.primary_fingerprint ?? String(group.id);
    const change: StatusChange = {
      id: eventId,
      project_id: group.project_id,
      fingerprint: [fingerprint],
      new_status: STATUS_CODE.unresolved,
      new_substatus: SUBSTATUS[kind],
      update_date: new Date(message.timestamp).toISOString(),
      shoal: {
        group_id: group.id,
        decided_by: 'regression',
        expect: {
          status: STATUS_CODE[group.status],
          ...(kind === 'regressed' && { resolution_id: group.resolution_id }),
        },
        flapping,
      },
    };
    return {
      topic: options.statusChanges,
      key: `${group.project_id}:${fingerprint}`,
      value: change as unknown as Record<string, unknown>,
    };
  });
  groups.proposed(group);
  return {
    group_id: group.id,
    project_id: group.project_id,
    expected_sequence: group.sequence,
    expected_status: group.status,
    resolution_id: group.resolution_id,
    kind,
    occurrence_id: event.occurrence_id ?? '',
    occurred_at: at,
    decided_by: decision.decided_by,
    why: decision.why,
    change_id: changeId,
    flapping,
  };
}

/**
 * The flapping guard's history for one batch: the earlier regressions (not superseded) of the
 * batch's groups that can fall in a window before any of its occurrences, read in one statement
 * when the batch's first regression needs it, then counted in memory with the batch's own.
 */
class RecentRegressions {
  private stored: Map<number, number[]> | undefined;

  constructor(
    private readonly groupIds: number[],
    private readonly windowMs: number,
    /** the earliest occurrence time of the batch: nothing older than it minus the window counts */
    private readonly earliestMs: number,
  ) {}

  /** Regressions of the group in the window before `at`, this batch's proposals included. */
  async within(tx: PoolClient, groupId: number, at: string, inBatch: Proposal[]): Promise<number> {
    this.stored ??= await this.load(tx);
    const until = Date.parse(at);
    const from = until - this.windowMs;
    const stored = (this.stored.get(groupId) ?? []).filter((t) => t > from && t <= until).length;
    const batchCount = inBatch.filter(
      (p) => p.group_id === groupId && p.kind === 'regressed' && Date.parse(p.occurred_at) > from,
    ).length;
    return stored + batchCount;
  }

  private async load(tx: PoolClient): Promise<Map<number, number[]>> {
    const { rows } = await tx.query<{ group_id: string; occurred_at: Date }>(
      `SELECT group_id, occurred_at FROM regressions
       WHERE group_id = ANY($1::bigint[]) AND kind = 'regressed' AND state <> 'superseded' AND occurred_at > $2`,
      [this.groupIds, new Date(this.earliestMs - this.windowMs).toISOString()],
    );
    const byGroup = new Map<number, number[]>();
    for (const r of rows) {
      const id = Number(r.group_id);
      const times = byGroup.get(id) ?? [];
      times.push(r.occurred_at.getTime());
      byGroup.set(id, times);
    }
    return byGroup;
  }
}

/**
 * Releases (dates, commits, tombstones: a deleted one keeps its place in the order) and group
 * deletions: a deleted group is marked, and its regression records are detached in this transaction.
 */
async function projectEntities(batch: Message<EntityChange>[], tx: PoolClient) {
  for (const { value } of batch) {
    const deletedAt =
      value.change === 'deleted' || value.change === 'discarded' ? value.occurred_at : null;
    if (value.entity_kind === 'release' && value.project_id !== undefined)
      await tx.query(
        `INSERT INTO releases (project_id, version, released_at, commits, deleted_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (project_id, md5(version)) DO UPDATE SET
           released_at = coalesce(EXCLUDED.released_at, releases.released_at),
           commits = coalesce(EXCLUDED.commits, releases.commits),
           deleted_at = EXCLUDED.deleted_at`,
        [
          value.project_id,
          storableText(value.entity_id),
          // announced without a date: added when announced (Sentry's date_added)
          value.released_at ?? (value.change === 'created' ? value.occurred_at : null),
          value.commits?.map((c) => storableText(c)) ?? null,
          deletedAt,
        ],
      );
    else if (value.entity_kind === 'group' && deletedAt && /^[0-9]{1,16}$/.test(value.entity_id)) {
      await tx.query('UPDATE groups SET deleted_at = coalesce(deleted_at, $2) WHERE id = $1', [
        value.entity_id,
        deletedAt,
      ]);
      await tx.query(
        'UPDATE regressions SET detached_at = coalesce(detached_at, $2) WHERE group_id = $1',
        [value.entity_id, deletedAt],
      );
    }
  }
}

export type { Release };
