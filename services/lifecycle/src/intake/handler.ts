import type { EntityChange, GroupEvent, IncidentEvent } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import { PermanentError, type Handler, type Message } from '@shoal/kafka-runtime';
import {
  COMMANDED_GROUP_EVENTS,
  commandOfGroupEvent,
  systemCommand,
  UnorderedStatusChange,
  type SystemCommand,
} from './commands.js';
import type { IntakeMessage } from './lookups.js';

/**
 * The intake consumer: what happens to groups, incidents and projects becomes system commands on
 * shoal.lifecycle-commands.v1 (through the outbox, keyed by issue id = group id), which the decide
 * consumer applies in each issue's order. Intake decides nothing about issues; it keeps only what
 * it needs to address commands (`intake_*` tables: groups' projects and tombstones, deleted
 * projects, incident membership).
 *
 * - group events (commands.ts): group_created → open (and hide, in a deleted project),
 *   group_activity → observe, status_changed → sync_status; the rest command nothing. A group
 *   event for a deleted group never gets here (lookups.ts: stale_reference(group) by policy).
 * - entity changes: a group deleted or discarded → delete (its issue's tombstone); a project
 *   deleted → hide each of its issues, restored → unhide them.
 * - incidents (dedup): a group linked → set_duplicate of the incident's canonical issue, unlinked →
 *   cleared, merged → every member re-pointed; a new canonical re-points every member.
 *
 * One batch is one partition of one topic. Group events (the hot path) take one statement per
 * batch, two when it creates groups (their projects' rows are locked against a deletion in
 * flight); entity changes and incidents, rare, a few per message. Throws PermanentError
 * (`schema_invalid`) for a message it cannot address (a status_changed without sequence, a group
 * deletion whose id is not a number).
 */

export interface IntakeOptions {
  /** The full name of shoal.lifecycle-commands.v1 (namespace included). */
  lifecycleCommands: string;
  /** Intake's clock, the commands' `issued_at` (tests fix it). */
  now?: () => number;
}

type Emit = (source: Message<IntakeMessage>, command: SystemCommand) => void;

export function intakeHandler(options: IntakeOptions): Handler<IntakeMessage> {
  const now = options.now ?? Date.now;
  return async (batch, tx, ctx) => {
    const issuedAt = new Date(now()).toISOString();
    const emit: Emit = (source, command) =>
      ctx.emit(source, () => ({
        topic: options.lifecycleCommands,
        key: String(command.issue_id),
        value: command as unknown as Record<string, unknown>,
      }));
    switch (batch[0]!.topicKey) {
      case 'groupEvents':
        return groupEvents(batch as Message<GroupEvent>[], tx, issuedAt, emit);
      case 'entityChanges':
        for (const message of batch as Message<EntityChange>[])
          await entityChange(message, tx, issuedAt, emit);
        return;
      case 'incidents':
        for (const message of batch as Message<IncidentEvent>[])
          await incident(message, tx, issuedAt, emit);
        return;
      default:
        throw new Error(`intake does not read ${batch[0]!.topic}`);
    }
  };
}

async function groupEvents(
  batch: Message<GroupEvent>[],
  tx: PoolClient,
  issuedAt: string,
  emit: Emit,
): Promise<void> {
  const commanded = batch.filter((m) => COMMANDED_GROUP_EVENTS.has(m.value.event_type));
  if (commanded.length === 0) return;
  const createdIn = commanded
    .filter((m) => m.value.event_type === 'group_created')
    .map((m) => m.value.project_id);
  // the created groups' projects, locked (in id order) against a deletion or restore in flight on
  // the entity-changes partition: whichever commits second sees the other, so a new issue of a
  // project being deleted is hidden either by this batch or by the deletion's fan-out
  const deletedProjects = new Set<number>();
  if (createdIn.length > 0) {
    const { rows } = await tx.query<{ id: string; deleted: boolean }>(
      `INSERT INTO intake_projects (id) SELECT DISTINCT unnest($1::bigint[]) ORDER BY 1
       ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id
       RETURNING id::text, deleted_at IS NOT NULL AS deleted`,
      [createdIn],
    );
    for (const r of rows) if (r.deleted) deletedProjects.add(Number(r.id));
  }
  // each group's project, for the project's hide and unhide
  await tx.query(
    `INSERT INTO intake_groups (group_id, project_id)
     SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT (group_id) DO NOTHING`,
    [commanded.map((m) => m.value.group_id), commanded.map((m) => m.value.project_id)],
  );
  for (const message of commanded) {
    const event = message.value;
    let command: SystemCommand | undefined;
    try {
      command = commandOfGroupEvent(event, issuedAt);
    } catch (error) {
      if (error instanceof UnorderedStatusChange)
        throw new PermanentError('schema_invalid', error.message, message.offset);
      throw error;
    }
    if (!command) continue;
    emit(message, command);
    if (event.event_type === 'group_created' && deletedProjects.has(event.project_id))
      emit(
        message,
        systemCommand(event, event.group_id, 'hide', issuedAt, { project_id: event.project_id }),
      );
  }
}

const idOf = (message: Message<EntityChange>): number => {
  const id = Number(message.value.entity_id);
  if (!Number.isSafeInteger(id) || id < 1)
    throw new PermanentError(
      'schema_invalid',
      `${message.value.entity_kind} id ${JSON.stringify(message.value.entity_id)} is not a positive integer`,
      message.offset,
    );
  return id;
};

async function entityChange(
  message: Message<EntityChange>,
  tx: PoolClient,
  issuedAt: string,
  emit: Emit,
): Promise<void> {
  const change = message.value;
  if (change.entity_kind === 'group' && ['deleted', 'discarded'].includes(change.change)) {
    const group = idOf(message);
    // the tombstone; a group deleted again commands nothing more
    const { rowCount } = await tx.query(
      `INSERT INTO intake_groups (group_id, project_id, deleted_at) VALUES ($1, $2, $3)
       ON CONFLICT (group_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at
       WHERE intake_groups.deleted_at IS NULL`,
      [group, change.project_id ?? null, change.occurred_at],
    );
    if (rowCount) emit(message, systemCommand(change, group, 'delete', issuedAt));
    return;
  }
  if (change.entity_kind === 'project' && ['deleted', 'restored'].includes(change.change)) {
    const project = idOf(message);
    const deleted = change.change === 'deleted';
    // the project's row first (a group_created batch of it in flight holds it: waited for), then,
    // in a statement of its own, its groups as they are once that batch committed
    await tx.query(
      `INSERT INTO intake_projects (id, deleted_at) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at`,
      [project, deleted ? change.occurred_at : null],
    );
    const { rows } = await tx.query<{ group_id: string }>(
      `SELECT group_id::text FROM intake_groups g
       WHERE project_id = $1 AND deleted_at IS NULL ORDER BY g.group_id`,
      [project],
    );
    for (const { group_id } of rows)
      emit(
        message,
        systemCommand(change, Number(group_id), deleted ? 'hide' : 'unhide', issuedAt, {
          project_id: project,
        }),
      );
  }
}

interface DuplicateLink {
  duplicate_of: number | null;
  incident_id: number | null;
}

async function incident(
  message: Message<IncidentEvent>,
  tx: PoolClient,
  issuedAt: string,
  emit: Emit,
): Promise<void> {
  const event = message.value;
  const id = event.incident_id;
  const canonical = event.canonical_group_id;
  const inIncident = (): DuplicateLink => ({ duplicate_of: canonical, incident_id: id });
  // the incident's canonical before this event (its events are on one partition, in order)
  const { rows: before } = await tx.query<{ canonical_group_id: string | null }>(
    `WITH previous AS (SELECT canonical_group_id FROM intake_incidents WHERE id = $1),
     upserted AS (
       INSERT INTO intake_incidents (id, canonical_group_id) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET canonical_group_id = EXCLUDED.canonical_group_id)
     SELECT canonical_group_id::text FROM previous`,
    [id, canonical],
  );
  const canonicalChanged =
    before.length === 0 || Number(before[0]!.canonical_group_id ?? 0) !== (canonical ?? 0);
  const links = new Map<number, DuplicateLink>();
  switch (event.event_type) {
    case 'incident_linked':
      if (event.group_id !== undefined) {
        await tx.query(
          `INSERT INTO intake_incident_members (group_id, incident_id) VALUES ($1, $2)
           ON CONFLICT (group_id) DO UPDATE SET incident_id = EXCLUDED.incident_id`,
          [event.group_id, id],
        );
        links.set(event.group_id, inIncident());
      }
      break;
    case 'incident_unlinked':
      if (event.group_id !== undefined) {
        // a group that has moved on (split into an incident of its own, seen first) keeps its link
        const { rowCount } = await tx.query(
          'DELETE FROM intake_incident_members WHERE group_id = $1 AND incident_id = $2',
          [event.group_id, id],
        );
        if (rowCount) links.set(event.group_id, { duplicate_of: null, incident_id: null });
      }
      break;
    case 'incident_merged':
      await tx.query(
        `WITH moved AS (
           UPDATE intake_incident_members SET incident_id = $1 WHERE incident_id = $2)
         INSERT INTO intake_incident_members (group_id, incident_id)
         SELECT unnest($3::bigint[]), $1
         ON CONFLICT (group_id) DO UPDATE SET incident_id = EXCLUDED.incident_id`,
        [id, event.merged_incident_id ?? null, event.member_group_ids ?? []],
      );
      if (event.merged_incident_id !== undefined)
        await tx.query('DELETE FROM intake_incidents WHERE id = $1', [event.merged_incident_id]);
      break;
  }
  // a merge, or a new canonical: every member points at the canonical issue
  if (event.event_type === 'incident_merged' || canonicalChanged) {
    const { rows } = await tx.query<{ group_id: string }>(
      'SELECT group_id::text FROM intake_incident_members WHERE incident_id = $1',
      [id],
    );
    for (const { group_id } of rows)
      if (!links.has(Number(group_id))) links.set(Number(group_id), inIncident());
  }
  if (links.size === 0) return;
  // a deleted group's issue is a tombstone: nothing to annotate
  const { rows: gone } = await tx.query<{ group_id: string }>(
    `SELECT group_id::text FROM intake_groups
     WHERE group_id = ANY($1::bigint[]) AND deleted_at IS NOT NULL`,
    [[...links.keys()]],
  );
  const tombstones = new Set(gone.map((r) => Number(r.group_id)));
  for (const [group, link] of [...links].sort(([a], [b]) => a - b)) {
    if (tombstones.has(group)) continue;
    emit(
      message,
      systemCommand(event, group, 'set_duplicate', issuedAt, {
        duplicate_of: link.duplicate_of === group ? null : link.duplicate_of,
        incident_id: link.incident_id,
      }),
    );
  }
}
