import type { LifecycleCommand } from '@shoal/contracts';
import { serviceSchema, type Pool } from '@shoal/db';
import { NotSetUpError } from '../exit.js';
import { legacyFingerprint, legacyStepId } from './occurrence.js';
import type { PlannedReport } from './plan.js';

/**
 * The second half of an import: once grouping has grouped a report's occurrence and lifecycle
 * has opened its issue (issue id = group id), the issue gets the report's history as lifecycle commands, in order: its fields
 * (`update`), its description and events as notes (each with its own time as `occurred_at`), then
 * its status. Lifecycle has no claim to give an imported issue, so a legacy in_progress or
 * awaiting_verification issue is imported triaged, with a note saying so. A duplicate's issue is
 * its canonical's: it adds only its notes there.
 */

export interface IssueCommand {
  key: string;
  commandId: string;
  value: LifecycleCommand;
}

/** The group of each report's fingerprint that grouping has made so far, by legacy id. */
export async function groupsOf(
  pool: Pool,
  projectId: number,
  planned: PlannedReport[],
): Promise<Map<string, number>> {
  const byFingerprint = new Map(planned.map((p) => [legacyFingerprint(p.canonical.id), p]));
  // grouping keys a fingerprint by its md5 hex, as PostgreSQL's md5() spells it
  const { rows } = await pool.query<{ fingerprint: string; group_id: string }>(
    `SELECT f.fingerprint, h.group_id
     FROM unnest($2::text[]) AS f (fingerprint)
     JOIN ${serviceSchema('grouping')}.group_hashes h ON h.project_id = $1 AND h.hash = md5(f.fingerprint)`,
    [projectId, [...byFingerprint.keys()]],
  );
  const groupOfFingerprint = new Map(rows.map((r) => [r.fingerprint, Number(r.group_id)]));
  return new Map(
    planned.flatMap((p) => {
      const group = groupOfFingerprint.get(legacyFingerprint(p.canonical.id));
      return group === undefined ? [] : [[p.report.id, group]];
    }),
  );
}

/**
 * Which of `issueIds` lifecycle has opened. An agent's command for an issue not yet opened is held
 * and parks that issue's later commands, its `open` among them: the import waits for the open.
 */
export async function openedIssues(pool: Pool, issueIds: number[]): Promise<Set<number>> {
  const issues = `${serviceSchema('lifecycle')}.issues`;
  const { rows: found } = await pool.query<{ found: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AS found',
    [issues],
  );
  if (!found[0]!.found)
    throw new NotSetUpError(
      `no table ${issues}: lifecycle has not run against this database, so imported issues cannot be opened`,
    );
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM ${issues} WHERE id = ANY($1::bigint[])`,
    [issueIds],
  );
  return new Set(rows.map((r) => Number(r.id)));
}

const needsClaim = new Set(['in_progress', 'awaiting_verification']);

export function issueCommandsOf(
  planned: PlannedReport,
  issueId: number,
  actor: string,
  issuedAt: string,
): IssueCommand[] {
  const r = planned.report;
  const isCanonical = planned.canonical === r;
  let step = 0;
  const commands: IssueCommand[] = [];
  const add = (
    fields: Omit<LifecycleCommand, 'command_id' | 'issue_id' | 'actor' | 'issued_at'>,
  ) => {
    const commandId = legacyStepId(r.id, `command:${++step}`);
    commands.push({
      key: String(issueId),
      commandId,
      value: {
        command_id: commandId,
        issue_id: issueId,
        actor,
        issued_at: issuedAt,
        origin: 'agent',
        admin: true,
        ...fields,
      } as LifecycleCommand,
    });
  };
  const note = (text: string, occurredAt: string) =>
    add({ command: 'add_note', note: text, occurred_at: occurredAt });

  if (isCanonical) {
    const fields = {
      ...(r.severity != null && { severity: r.severity }),
      ...(r.category !== undefined && { category: r.category }),
      ...(r.assignee !== undefined && { assignee: r.assignee }),
      ...(r.sla_due_at != null && { sla_due_at: r.sla_due_at }),
      ...(r.trace_id !== undefined && { trace_id: r.trace_id }),
      ...(r.request_id !== undefined && { request_id: r.request_id }),
      ...(r.release_sha != null && { release_sha: r.release_sha }),
    };
    if (Object.keys(fields).length > 0)
      add({ command: 'update', ...fields, occurred_at: r.updated_at ?? r.created_at });
  } else {
    note(`duplicate report ${r.id}: ${r.title}`, r.created_at);
  }
  if (r.description !== undefined) note(r.description, r.created_at);
  for (const e of r.events ?? [])
    note(
      [`${e.kind}${e.actor === undefined ? '' : ` by ${e.actor}`}`, e.note]
        .filter(Boolean)
        .join(': '),
      e.at,
    );
  if (!isCanonical || r.status == null || r.status.status === 'new') return commands;

  const { status, closeReason } = r.status;
  const at = r.closed_at ?? r.resolved_at ?? r.updated_at ?? r.created_at;
  if (status === 'resolved')
    add({
      command: 'resolve',
      resolution: {
        ...(r.commit_shas?.length
          ? { type: 'in_commit', commit_shas: r.commit_shas }
          : { type: 'now' }),
        ...(r.resolution_notes !== undefined && { notes: r.resolution_notes }),
      },
      occurred_at: at,
    });
  else if (status === 'closed')
    add({
      command: 'transition',
      to_status: 'closed',
      close_reason: closeReason ?? 'fixed',
      ...(r.resolution_notes !== undefined && { note: r.resolution_notes }),
      occurred_at: at,
    });
  else
    add({
      command: 'transition',
      to_status: 'triaged',
      ...(needsClaim.has(status) && {
        note: `legacy status ${status}: imported triaged (a claim is an agent's lease, not imported)`,
      }),
      occurred_at: at,
    });
  return commands;
}
