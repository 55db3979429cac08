/**
 * Status changes, applied by grouping, the only writer of group status (DESIGN.md "Who owns what").
 * A change names its group by fingerprint (upstream) or by `shoal.group_id` (Shoal's own); one with
 * `shoal.expect` is applied only while the group is in the expected status (and resolution), else it
 * is a no-op, recorded as a `status_change_noop` group event. Every applied change moves the group's
 * `status_sequence` by one; every resolve numbers a new resolution (`resolution_id`). Both, with
 * the resolution, who decided it and the flapping flag, ride on `status_changed`.
 */
import type { GroupEvent, StatusChange } from '@shoal/contracts';
import type { PoolClient } from '@shoal/db';
import { TransientError, type HandlerContext, type Message } from '@shoal/kafka-runtime';
import { metrics } from '@shoal/observability';
import { primaryHash } from './fingerprints.js';

const STATUS = ['unresolved', 'resolved', 'ignored'] as const;
type Status = (typeof STATUS)[number];
type Resolution = NonNullable<GroupEvent['resolution']>;

/** bigint columns: numbers or text, as the pool's type parsers give them; Number() reads both. */
interface LockedGroup {
  id: number | string;
  status: Status;
  resolution_id: number | string;
  status_sequence: number | string;
}

/**
 * How a resolve is resolved: `shoal.resolution`, else the deprecated `resolved_in_*` fields, else
 * `now`; resolved at the change's `update_date` when it is a time, else when it was recorded.
 */
export function resolutionOf(change: StatusChange, recordedAt: number): Resolution {
  const given = change.shoal?.resolution;
  const legacyRelease = change.shoal?.resolved_in_release;
  const type =
    given?.type ??
    (legacyRelease !== undefined
      ? 'in_release'
      : change.shoal?.resolved_in_next_release
        ? 'in_next_release'
        : 'now');
  const updated = change.update_date ? Date.parse(change.update_date) : NaN;
  return {
    type,
    release: given ? (given.release ?? null) : (legacyRelease ?? null),
    current_release_version: given?.current_release_version ?? null,
    commit: given?.commit ?? null,
    resolved_at: new Date(Number.isNaN(updated) ? recordedAt : updated).toISOString(),
  };
}

/** Locks the change's group (by id, else by its fingerprint's hash): live groups only. */
async function lockGroup(tx: PoolClient, change: StatusChange): Promise<LockedGroup | undefined> {
  const columns = 'g.id, g.status, g.resolution_id, g.status_sequence';
  const groupId = change.shoal?.group_id;
  const { rows } =
    groupId !== undefined
      ? await tx.query<LockedGroup>(
          `SELECT ${columns} FROM groups g WHERE g.id = $1 AND g.deleted_at IS NULL FOR UPDATE`,
          [groupId],
        )
      : await tx.query<LockedGroup>(
          `SELECT ${columns} FROM groups g JOIN group_hashes h ON h.group_id = g.id
           WHERE h.project_id = $1 AND h.hash = $2 AND g.deleted_at IS NULL FOR UPDATE OF g`,
          [change.project_id, primaryHash(change)],
        );
  return rows[0];
}

/** Applies each change in order; the group lookup ran already. */
export async function changeStatuses(
  batch: Message<StatusChange>[],
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
  groupEvents: string,
) {
  for (const message of batch) {
    const change = message.value;
    const group = await lockGroup(tx, change);
    // the lookup saw the group, but it was deleted before this change could lock it: retried, the
    // lookup then holds the change (fingerprint freed) or finds it stale (deleted, discarded)
    if (!group)
      throw new TransientError(
        `the group of ${change.project_id}:${change.shoal?.group_id ?? primaryHash(change)} was deleted meanwhile; retrying`,
      );
    const common = {
      occurred_at: new Date(message.timestamp).toISOString(),
      group_id: Number(group.id),
      project_id: change.project_id,
      change_id: message.messageId,
      decided_by: change.shoal?.decided_by ?? 'upstream',
    } as const;
    const expect = change.shoal?.expect;
    if (
      expect &&
      (STATUS[expect.status] !== group.status ||
        (expect.resolution_id != null && expect.resolution_id !== Number(group.resolution_id)))
    ) {
      ctx.emit(message, (eventId) => ({
        topic: groupEvents,
        key: String(group.id),
        value: {
          event_id: eventId,
          event_type: 'status_change_noop',
          ...common,
          status: group.status,
          sequence: Number(group.status_sequence),
          resolution_id: Number(group.resolution_id),
          expect: {
            status: STATUS[expect.status],
            ...(expect.resolution_id != null && { resolution_id: expect.resolution_id }),
          },
        } satisfies GroupEvent,
      }));
      metrics.groupingStatusChangeNoops.inc({ decided_by: common.decided_by });
      continue;
    }
    const resolution = change.new_status === 1 ? resolutionOf(change, message.timestamp) : null;
    const ignore = change.new_status === 2 ? (change.shoal?.ignore ?? null) : null;
    const { rows } = await tx.query<{
      resolution_id: number | string;
      status_sequence: number | string;
      flapping: boolean;
    }>(
      `UPDATE groups SET status = $2, substatus = $3, status_sequence = status_sequence + 1,
         resolution_id = resolution_id + $4::int, resolution = $5, ignore = $6,
         flapping = coalesce($7, flapping)
       WHERE id = $1 RETURNING resolution_id, status_sequence, flapping`,
      [
        group.id,
        STATUS[change.new_status],
        change.new_substatus ?? null,
        resolution ? 1 : 0,
        resolution,
        ignore,
        change.shoal?.flapping ?? null,
      ],
    );
    const updated = rows[0]!;
    ctx.emit(message, (eventId) => ({
      topic: groupEvents,
      key: String(group.id),
      value: {
        event_id: eventId,
        event_type: 'status_changed',
        ...common,
        status: STATUS[change.new_status],
        previous_status: group.status,
        substatus: change.new_substatus ?? null,
        sequence: Number(updated.status_sequence),
        resolution_id: Number(updated.resolution_id),
        flapping: updated.flapping,
        ...(resolution && { resolution }),
        ...(ignore && { ignore }),
      } satisfies GroupEvent,
    }));
  }
}
