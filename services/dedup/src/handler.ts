import type { DedupCommand, EntityChange, GroupEvent, IncidentEvent } from '@shoal/contracts';
import { storableText, type PoolClient } from '@shoal/db';
import { explain } from '@shoal/dedup-keys';
import {
  PermanentError,
  StaleReferenceError,
  type Handler,
  type HandlerContext,
  type Message,
} from '@shoal/kafka-runtime';
import type { DedupConfig } from './config.js';
import {
  announceProject,
  deleteMember,
  deleteProject,
  linkByKey,
  lockIncidents,
  lockLiveProjects,
  memberOf,
  mergeIncidents,
  splitMember,
  type IncidentRow,
} from './incidents.js';
import { appliesTo } from './lookups.js';

/**
 * Dedup's domain logic over the runtime, one batch of one partition in the runtime's transaction:
 * - group_created: the group's signal normalised and keyed (the project's key parts), then linked
 *   by key (incidents.ts). A group dedup already knows is left as it is: a re-sent group_created
 *   never re-links it, so a manual split stays split.
 * - group_activity: the member's counts, first and last seen (the latest totals win).
 * - entity-changes, a group deleted or discarded: it leaves its incident (incident_unlinked). A
 *   project deleted: the deletion cascades to its groups and incidents (deleteProject), each group
 *   that left one unlinked, the detached counts logged; announced or restored, it is live.
 * - dedup-commands: an operator's merge or split; one not allowed is rejected (`ctx.reject`), one
 *   naming an incident of a deleted project is a stale reference (by policy).
 * Other group events (status, regressions, releases) are not dedup's concern.
 */

export type DedupMessage = GroupEvent | EntityChange | DedupCommand;

export interface DedupOptions {
  /** The full name of the incidents topic (namespace included). */
  incidents: string;
  config: DedupConfig;
}

type Logger = HandlerContext<unknown>['logger'];
type Emit = (source: Message<unknown>, value: Omit<IncidentEvent, 'event_id'>) => void;

export function dedupHandler(options: DedupOptions): Handler<DedupMessage> {
  return async (batch, tx, ctx) => {
    const emit: Emit = (source, value) =>
      (ctx as HandlerContext<unknown>).emit(source, (eventId) => ({
        topic: options.incidents,
        key: String(value.incident_id),
        value: { event_id: eventId, ...value },
      }));
    switch (batch[0]!.topicKey) {
      case 'groupEvents':
        return applyGroupEvents(batch as Message<GroupEvent>[], tx, emit, options.config);
      case 'entityChanges':
        return applyEntityChanges(batch as Message<EntityChange>[], tx, emit, ctx.logger);
      case 'dedupCommands':
        return applyCommands(
          batch as Message<DedupCommand>[],
          tx,
          emit,
          ctx as HandlerContext<unknown>,
        );
      default:
        throw new Error(`dedup does not read ${batch[0]!.topic}`);
    }
  };
}

async function applyGroupEvents(
  batch: Message<GroupEvent>[],
  tx: PoolClient,
  emit: Emit,
  config: DedupConfig,
) {
  await lockLiveProjects(
    tx,
    batch.filter((m) => appliesTo(m.value)).map((m) => m.value.project_id),
  );
  await createMembers(
    batch.filter((m) => m.value.event_type === 'group_created'),
    tx,
    emit,
    config,
  );
  await recordActivity(
    batch.filter((m) => m.value.event_type === 'group_activity').map((m) => m.value),
    tx,
  );
}

/**
 * The batch's new groups: each one's signal normalised and keyed, its member row written (one
 * statement), then linked by key. A member row without a creation time holds activity that came
 * first and takes the creation; one with it is a group dedup knows, left as it is.
 */
async function createMembers(
  messages: Message<GroupEvent>[],
  tx: PoolClient,
  emit: Emit,
  config: DedupConfig,
) {
  const seen = new Set<number>();
  const firstOfEach = messages.filter(
    (m) => !seen.has(m.value.group_id) && Boolean(seen.add(m.value.group_id)),
  );
  const rows = firstOfEach.map((message) => {
    const { value } = message;
    // the very function `shoal dedup explain` prints
    const { parts, key } = explain(value.dedup_hints ?? {}, config.keyOptionsOf(value.project_id));
    return { message, value, parts, key };
  });
  if (!rows.length) return;
  const { rows: written } = await tx.query<{ group_id: string }>(
    `INSERT INTO members (group_id, project_id, dedup_key, parts, created_at)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::jsonb[], $5::timestamptz[])
     ON CONFLICT (group_id) DO UPDATE
       SET project_id = EXCLUDED.project_id, dedup_key = EXCLUDED.dedup_key,
           parts = EXCLUDED.parts, created_at = EXCLUDED.created_at
       WHERE members.created_at IS NULL AND members.deleted_at IS NULL
     RETURNING group_id::text`,
    [
      rows.map((r) => r.value.group_id),
      rows.map((r) => r.value.project_id),
      rows.map((r) => r.key),
      rows.map((r) =>
        JSON.stringify(r.parts, (_, v: unknown) =>
          typeof v === 'string' ? storableJsonText(v) : v,
        ),
      ),
      rows.map((r) => r.value.occurred_at),
    ],
  );
  const isNew = new Set(written.map((w) => Number(w.group_id)));
  const keyed = rows.filter((r) => isNew.has(r.value.group_id) && r.key !== null);
  const linked = await linkByKey(
    tx,
    keyed.map((r) => ({
      groupId: r.value.group_id,
      projectId: r.value.project_id,
      key: r.key!,
      createdAt: r.value.occurred_at,
    })),
    config.windowMs,
  );
  linked.forEach((link, i) =>
    emit(keyed[i]!.message, {
      event_type: 'incident_linked',
      occurred_at: link.createdAt,
      incident_id: link.incidentId,
      project_id: link.projectId,
      group_id: link.groupId,
      canonical_group_id: link.canonicalGroupId,
      dedup_key: link.key,
      reason: link.reason,
    }),
  );
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A string as jsonb can hold it: U+0000 spelled out as Shoal stores text, and a lone UTF-16
 * surrogate as U+FFFD, as the client sends one in text (JSON.stringify would escape it as
 * `\ud800`, which jsonb refuses).
 */
const storableJsonText = (value: string) => storableText(value).replace(LONE_SURROGATE, '\ufffd');

/** One statement for the batch: per group the largest total and latest sighting it reports. */
async function recordActivity(events: GroupEvent[], tx: PoolClient) {
  if (!events.length) return;
  const byGroup = new Map<
    number,
    { project: number; times: number; first?: string; last?: string }
  >();
  const earlier = (a?: string, b?: string) =>
    !a ? b : !b ? a : Date.parse(a) <= Date.parse(b) ? a : b;
  const later = (a?: string, b?: string) =>
    !a ? b : !b ? a : Date.parse(a) >= Date.parse(b) ? a : b;
  for (const e of events) {
    const seen = byGroup.get(e.group_id);
    byGroup.set(e.group_id, {
      project: e.project_id,
      times: Math.max(seen?.times ?? 0, e.times_seen ?? 0),
      first: earlier(seen?.first, e.first_seen),
      last: later(seen?.last, e.last_seen),
    });
  }
  const rows = [...byGroup];
  await tx.query(
    `INSERT INTO members (group_id, project_id, times_seen, first_seen, last_seen)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
     ON CONFLICT (group_id) DO UPDATE SET
       times_seen = greatest(members.times_seen, EXCLUDED.times_seen),
       first_seen = least(members.first_seen, EXCLUDED.first_seen),
       last_seen = greatest(members.last_seen, EXCLUDED.last_seen)`,
    [
      rows.map(([id]) => id),
      rows.map(([, r]) => r.project),
      rows.map(([, r]) => r.times),
      rows.map(([, r]) => r.first ?? null),
      rows.map(([, r]) => r.last ?? null),
    ],
  );
}

/** A group's or project's id as an entity change names it: a whole number, else schema-invalid. */
function entityIdOf({ value, offset }: Message<EntityChange>): number {
  const id = /^[0-9]{1,16}$/.test(value.entity_id) ? Number(value.entity_id) : NaN;
  if (!Number.isSafeInteger(id) || id < 1)
    throw new PermanentError(
      'schema_invalid',
      `/entity_id of a ${value.entity_kind} must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(value.entity_id.slice(0, 40))}`,
      offset,
    );
  return id;
}

async function applyEntityChanges(
  batch: Message<EntityChange>[],
  tx: PoolClient,
  emit: Emit,
  logger: Logger,
) {
  for (const message of batch) {
    const { value } = message;
    const deleted = value.change === 'deleted' || value.change === 'discarded';
    if (value.entity_kind === 'project') {
      if (deleted) await cascadeProjectDeletion(message, tx, emit, logger);
      else await announceProject(tx, entityIdOf(message));
      continue;
    }
    if (value.entity_kind !== 'group' || !deleted) continue;
    const groupId = entityIdOf(message);
    const left = await deleteMember(tx, {
      groupId,
      projectId: value.project_id ?? null,
      deletedAt: value.occurred_at,
    });
    if (left)
      emit(message, {
        event_type: 'incident_unlinked',
        occurred_at: value.occurred_at,
        incident_id: left.incidentId,
        project_id: left.projectId,
        group_id: groupId,
        canonical_group_id: left.canonicalGroupId,
        reason: 'group_deleted',
      });
  }
}

/**
 * A project's deletion through its groups and incidents (deleteProject): each group that left an
 * incident is unlinked (reason `project_deleted`, no canonical group left); what was detached is
 * reported in the log, for the operator who deleted the project.
 */
async function cascadeProjectDeletion(
  message: Message<EntityChange>,
  tx: PoolClient,
  emit: Emit,
  logger: Logger,
) {
  const projectId = entityIdOf(message);
  const detached = await deleteProject(tx, projectId, message.value.occurred_at);
  for (const { groupId, incidentId } of detached)
    emit(message, {
      event_type: 'incident_unlinked',
      occurred_at: message.value.occurred_at,
      incident_id: incidentId,
      project_id: projectId,
      group_id: groupId,
      canonical_group_id: null,
      reason: 'project_deleted',
    });
  if (detached.length)
    logger.warn(
      {
        project_id: projectId,
        groups: detached.length,
        incidents: new Set(detached.map((d) => d.incidentId)).size,
      },
      'project deleted: its groups left their incidents, which are kept detached',
    );
}

/** A command naming an incident of a deleted project is a stale reference to that project. */
function throwIfProjectDeleted(message: Message<DedupCommand>, incidents: IncidentRow[]) {
  const gone = incidents.find((i) => i.projectDeletedAt !== null);
  if (gone)
    throw new StaleReferenceError(
      'project',
      gone.projectId,
      message.offset,
      gone.projectDeletedAt!,
    );
}

async function applyCommands(
  batch: Message<DedupCommand>[],
  tx: PoolClient,
  emit: Emit,
  ctx: HandlerContext<unknown>,
) {
  for (const message of batch) {
    const { value } = message;
    if (value.command === 'cleanup_orphans') {
      await cleanupOrphans(message, tx, ctx);
      continue;
    }
    if (value.incident_id === undefined) {
      ctx.reject(message, `invalid_${value.command}`, `a ${value.command} names incident_id`);
      continue;
    }
    const said = {
      actor: value.actor,
      ...(value.reason !== undefined ? { note: value.reason } : {}),
    };
    if (value.command === 'merge') {
      const from = value.from_incident_id;
      if (from === undefined || from === value.incident_id) {
        ctx.reject(message, 'invalid_merge', 'a merge names another incident in from_incident_id');
        continue;
      }
      const locked = await lockIncidents(tx, [value.incident_id, from]);
      const into = locked.get(value.incident_id);
      const source = locked.get(from);
      if (!into || !source) {
        ctx.reject(
          message,
          'unknown_incident',
          `incident ${into ? from : value.incident_id} does not exist`,
        );
        continue;
      }
      throwIfProjectDeleted(message, [into, source]);
      const merged = [into, source].find((i) => i.mergedInto !== null);
      if (merged) {
        ctx.reject(
          message,
          'merged_incident',
          `incident ${merged.id} was merged into ${merged.mergedInto}`,
        );
        continue;
      }
      if (into.projectId !== source.projectId) {
        ctx.reject(
          message,
          'other_project',
          `incidents ${into.id} and ${source.id} belong to different projects`,
        );
        continue;
      }
      const result = await mergeIncidents(tx, into.id, source.id);
      emit(message, {
        event_type: 'incident_merged',
        occurred_at: value.issued_at,
        incident_id: into.id,
        project_id: into.projectId,
        canonical_group_id: result.canonicalGroupId,
        merged_incident_id: source.id,
        member_group_ids: result.members,
        reason: 'merge',
        ...said,
      });
    } else {
      const groupId = value.group_id;
      if (groupId === undefined) {
        ctx.reject(message, 'invalid_split', 'a split names the group to split out in group_id');
        continue;
      }
      const incident = (await lockIncidents(tx, [value.incident_id])).get(value.incident_id);
      if (!incident) {
        ctx.reject(message, 'unknown_incident', `incident ${value.incident_id} does not exist`);
        continue;
      }
      throwIfProjectDeleted(message, [incident]);
      const { isMember, members } = await memberOf(tx, incident.id, groupId);
      if (!isMember || members < 2) {
        ctx.reject(
          message,
          'not_splittable',
          isMember
            ? `group ${groupId} is the only member of incident ${incident.id}`
            : `group ${groupId} is not a live member of incident ${incident.id}`,
        );
        continue;
      }
      const split = await splitMember(tx, incident, groupId, value.issued_at);
      emit(message, {
        event_type: 'incident_unlinked',
        occurred_at: value.issued_at,
        incident_id: incident.id,
        project_id: incident.projectId,
        group_id: groupId,
        canonical_group_id: split.oldCanonicalGroupId,
        reason: 'split',
        ...said,
      });
      emit(message, {
        event_type: 'incident_linked',
        occurred_at: value.issued_at,
        incident_id: split.newIncidentId,
        project_id: incident.projectId,
        group_id: groupId,
        canonical_group_id: groupId,
        reason: 'split',
        ...said,
      });
    }
  }
}

/**
 * `cleanup_orphans` (`shoal orphans cleanup --service dedup`): removes the named members of the
 * project that the `orphans` view still lists (tombstones of a deleted project), one audit row each
 * in `orphan_cleanups`. One no longer an orphan (its project restored, already removed) is kept and
 * the command refused (`not_orphaned`) beside what it did remove.
 */
async function cleanupOrphans(
  message: Message<DedupCommand>,
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
) {
  const { value } = message;
  const named = value.group_ids ?? [];
  if (value.project_id === undefined || !named.length) {
    ctx.reject(message, 'invalid_cleanup', 'a cleanup_orphans names project_id and group_ids');
    return;
  }
  const { rows } = await tx.query<{ group_id: string }>(
    `WITH gone AS (
       DELETE FROM members m USING orphans o
       WHERE m.group_id = o.group_id AND o.project_id = $1 AND m.group_id = ANY($2::bigint[])
       RETURNING m.group_id, m.project_id, o.why, to_jsonb(m) AS record)
     INSERT INTO orphan_cleanups (group_id, project_id, why, record, actor, reason, command_id)
     SELECT group_id, project_id, why, record, $3, $4, $5 FROM gone
     RETURNING group_id::text`,
    [value.project_id, named, value.actor, value.reason ?? null, value.command_id],
  );
  const removed = new Set(rows.map((r) => Number(r.group_id)));
  const kept = named.filter((id) => !removed.has(id));
  if (kept.length)
    ctx.reject(
      message,
      'not_orphaned',
      `kept ${kept.length} of ${named.length} members of project ${value.project_id}, no longer orphans (project restored, or already removed): ${kept.join(', ')}`,
    );
}
