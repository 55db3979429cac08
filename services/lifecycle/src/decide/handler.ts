import type { LifecycleCommand } from '@shoal/contracts';
import {
  StaleReferenceError,
  type Handler,
  type HandlerContext,
  type Message,
} from '@shoal/kafka-runtime';
import type { DecidedHere } from '../decided-here.js';
import type { SlaMs } from '../transitions.js';
import { decide, type Decision } from './decide.js';
import { groupStatusChange, lifecycleEvent } from './events.js';
import {
  cleanParkedKeys,
  writeOrphanCleanups,
  type CleanedRecord,
  type OrphanCleanup,
} from './orphans.js';
import {
  batchStart,
  earlyCommandsOf,
  storable,
  writeBatch,
  type CommandRow,
  type EarlyCommand,
  type HistoryRow,
  type IssueRow,
} from './rows.js';

/**
 * The decide consumer: shoal.lifecycle-commands.v1, one batch of one partition in the runtime's
 * transaction, commands applied in log order against the issues they name (locked once per batch,
 * in the statement that finds the commands decided before), each decided by decide.ts and its
 * outcome recorded in `lifecycle_commands` with the batch (all of its writes in one statement).
 * An applied change writes its history row and emits its lifecycle event (shoal.lifecycle.v1,
 * keyed by issue id; the event id derives from the command's id, so a rebuild re-creates it) and,
 * for an agent's move that changes what the group should be, the conditional status change
 * (shoal.status-changes.v1). A refusal is `ctx.reject`: an outcome, never a parked key nor a
 * dead-letter count. A command decided before (a re-send after the ledger forgot it) is not judged
 * again. System commands for an issue not yet opened wait in `early_commands` and are decided right
 * after its open.
 *
 * Agent commands for an issue never opened are held by the runtime (lookups.ts `issueLookup`); for
 * a deleted one they are `stale_reference(issue)`, dead-lettered by policy: by the lookup before
 * they reach this handler, or thrown here when the deletion came earlier in the same batch (the
 * lookup read the issues before the batch), so where batches end never changes the outcome.
 *
 * An operator's `cleanup_orphans` (orphans.ts) expires its parked keys first, then
 * tombstones its issue in log order, if the `orphans` view still lists it and no command earlier
 * in the batch deleted it; an audit row each, the records no longer orphans named (`not_orphaned`).
 */

export interface DecideOptions {
  /** Full topic names (namespace included). */
  topics: { lifecycle: string; statusChanges: string };
  slaMs: SlaMs;
  /** The agent API of this process, handed each batch's outcomes before the commit (decided-here.ts). */
  decidedHere?: DecidedHere;
}

export function decideHandler(options: DecideOptions): Handler<LifecycleCommand> {
  return async (batch, tx, ctx) => {
    if (batch[0]!.topicKey !== 'lifecycleCommands')
      throw new Error(`decide does not read ${batch[0]!.topic}`);
    // a re-sent command's issue is locked too: one round trip for both reads
    const {
      decided,
      issues: rows,
      txid,
    } = await batchStart(
      tx,
      batch.map((m) => m.value.command_id),
      [...new Set(batch.map((m) => m.value.issue_id))],
    );
    const todo = batch.filter((m) => !decided.has(m.value.command_id));
    if (todo.length === 0) return;
    const opening = todo.filter((m) => m.value.command === 'open' && !rows.has(m.value.issue_id));
    const early = groupEarly(
      await earlyCommandsOf(
        tx,
        opening.map((m) => m.value.issue_id),
      ),
    );
    const cleanups = new Map<string, OrphanCleanup>();
    for (const { value } of todo)
      if (value.command === 'cleanup_orphans')
        cleanups.set(value.command_id, await cleanParkedKeys(tx, value));
    const batchRun = new BatchRun(options, ctx as HandlerContext<unknown>, rows, early, cleanups);
    for (const message of todo)
      batchRun.apply(message as Message<unknown>, storable(message.value));
    const changes = batchRun.changes();
    await writeBatch(tx, changes);
    await writeOrphanCleanups(tx, batchRun.audits);
    options.decidedHere?.offer(txid, { commands: changes.commands, issue: (id) => rows.get(id) });
  };
}

const groupEarly = (list: EarlyCommand[]) => {
  const byIssue = new Map<number, EarlyCommand[]>();
  for (const e of list) byIssue.set(e.issue_id, [...(byIssue.get(e.issue_id) ?? []), e]);
  return byIssue;
};

/** One batch's decisions in memory, in log order; written at the end in one statement per table. */
class BatchRun {
  private readonly history: HistoryRow[] = [];
  private readonly commands: CommandRow[] = [];
  private readonly newEarly: EarlyCommand[] = [];
  private readonly earlyDone: { issue_id: number; command_id: string }[] = [];
  private readonly touched = new Set<number>();
  readonly audits: Parameters<typeof writeOrphanCleanups>[1] = [];

  constructor(
    private readonly options: DecideOptions,
    private readonly ctx: HandlerContext<unknown>,
    private readonly rows: Map<number, IssueRow>,
    private readonly early: Map<number, EarlyCommand[]>,
    private readonly cleanups: Map<string, OrphanCleanup>,
  ) {}

  apply(message: Message<unknown>, cmd: LifecycleCommand): void {
    const before = this.rows.get(cmd.issue_id);
    const cleanup = this.cleanups.get(cmd.command_id);
    if (cleanup) return this.cleanOrphans(message, cmd, before, cleanup);
    const decision = decide(before, cmd, this.options.slaMs);
    if (decision.kind === 'stale')
      throw new StaleReferenceError(
        'issue',
        cmd.issue_id,
        message.offset,
        new Date(decision.deletedAt),
      );
    if (decision.kind === 'early') {
      const waiting: EarlyCommand = {
        issue_id: cmd.issue_id,
        command_id: cmd.command_id,
        offset: message.offset,
        command: cmd,
      };
      this.newEarly.push(waiting);
      this.early.set(cmd.issue_id, [...(this.early.get(cmd.issue_id) ?? []), waiting]);
      return;
    }
    this.record(message, cmd, before, decision);
    if (cmd.command === 'open' && !before && decision.kind === 'applied') {
      for (const waiting of this.early.get(cmd.issue_id) ?? []) {
        // decided as its own message: its events' ids derive from its own command id
        const source: Message<unknown> = {
          ...message,
          messageId: waiting.command_id,
          value: waiting.command,
        };
        const current = this.rows.get(cmd.issue_id);
        const decided = decide(current, waiting.command, this.options.slaMs);
        if (decided.kind === 'early' || decided.kind === 'stale')
          throw new Error(`an early system command decided ${decided.kind}`);
        this.record(source, waiting.command, current, decided);
        this.earlyDone.push({ issue_id: waiting.issue_id, command_id: waiting.command_id });
      }
      this.early.delete(cmd.issue_id);
    }
  }

  /**
   * A cleanup_orphans: its parked keys were expired before the batch (the handler);
   * its issue, if the view still listed it, is tombstoned now unless deleted earlier in the batch.
   * Applied when it cleaned anything, else ignored; records kept are named (`not_orphaned`).
   */
  private cleanOrphans(
    message: Message<unknown>,
    cmd: LifecycleCommand,
    before: IssueRow | undefined,
    found: OrphanCleanup,
  ): void {
    const audit = (c: CleanedRecord) =>
      this.audits.push({
        ...c,
        issue_id: cmd.issue_id,
        actor: cmd.actor,
        reason: cmd.reason ?? null,
        command_id: cmd.command_id,
      });
    found.cleaned.forEach(audit);
    const kept = [...found.kept];
    const live = before !== undefined && before.deleted_at === null;
    if (found.issueWhy && live)
      audit({ kind: 'issue', id: String(cmd.issue_id), why: found.issueWhy, record: before });
    else if (found.issueWhy) kept.push(`issue ${cmd.issue_id}`);
    const note = kept.length
      ? {
          reason: 'not_orphaned',
          detail: `kept ${kept.length} of ${cmd.orphans?.length ?? 0} records, no longer orphans (restored, or already cleaned): ${kept.join(', ')}`,
        }
      : undefined;
    if (note) this.ctx.reject(message, note.reason, note.detail);
    if (found.issueWhy && live) {
      const decision = decide(before, cmd, this.options.slaMs);
      if (decision.kind === 'early' || decision.kind === 'stale')
        throw new Error(`a cleanup of a live issue decided ${decision.kind}`);
      return this.record(message, cmd, before, decision, note);
    }
    const cleaned = found.cleaned.length > 0;
    this.commands.push({
      ...this.outcomeOf(cmd, before, cleaned ? 'applied' : 'ignored', before?.clock),
      reason: note?.reason ?? null,
      detail: note?.detail ?? null,
    });
  }

  private outcomeOf(
    cmd: LifecycleCommand,
    after: IssueRow | undefined,
    outcome: CommandRow['outcome'],
    decidedAt: string | undefined,
  ): CommandRow {
    return {
      command_id: cmd.command_id,
      issue_id: cmd.issue_id,
      command: cmd.command,
      actor: cmd.actor,
      outcome,
      reason: null,
      detail: null,
      allowed_transitions: null,
      version: after?.version ?? null,
      issue: after
        ? {
            status: after.status,
            version: after.version,
            claimed_by: after.claimed_by,
            claim_expires_at: after.claim_expires_at,
          }
        : null,
      decided_at: decidedAt ?? new Date(Date.parse(cmd.issued_at)).toISOString(),
    };
  }

  private record(
    message: Message<unknown>,
    cmd: LifecycleCommand,
    before: IssueRow | undefined,
    decision: Exclude<Decision, { kind: 'early' | 'stale' }>,
    /** Why some of what an applied command named was not done (a cleanup's kept records). */
    note?: { reason: string; detail: string },
  ): void {
    const after = decision.row;
    if (after) {
      this.rows.set(after.id, after);
      this.touched.add(after.id);
    }
    const outcome: CommandRow = {
      ...this.outcomeOf(cmd, after, decision.kind, after?.clock),
      reason: decision.kind === 'applied' ? (note?.reason ?? null) : decision.reason,
      detail: decision.kind === 'applied' ? (note?.detail ?? null) : decision.detail,
      allowed_transitions: decision.kind === 'rejected' ? decision.allowed : null,
    };
    this.commands.push(outcome);
    if (decision.kind === 'rejected') {
      this.ctx.reject(message, decision.reason, decision.detail);
      return;
    }
    if (decision.kind !== 'applied' || !decision.event) return;
    const row = decision.row;
    const event = decision.event;
    this.history.push({
      issue_id: row.id,
      version: row.version,
      event_type: event.type,
      command_id: cmd.command_id,
      actor: cmd.actor,
      origin: cmd.origin ?? 'agent',
      from_status: before?.status ?? null,
      to_status: row.status,
      at: row.updated_at,
      occurred_at: cmd.occurred_at ? new Date(Date.parse(cmd.occurred_at)).toISOString() : null,
      in_previous_state:
        before && before.status !== row.status
          ? `${Date.parse(row.updated_at) - Date.parse(before.status_since)} milliseconds`
          : null,
      details: event.details,
    });
    this.ctx.emit(message, (eventId) => ({
      topic: this.options.topics.lifecycle,
      key: String(row.id),
      value: lifecycleEvent(eventId, event, before, row, cmd) as unknown as Record<string, unknown>,
    }));
    const request = decision.group;
    if (request) {
      let requestId = '';
      this.ctx.emit(message, (eventId) => {
        requestId = eventId;
        const change = groupStatusChange(eventId, request, row, cmd);
        return {
          topic: this.options.topics.statusChanges,
          key: change.key,
          value: change.value as unknown as Record<string, unknown>,
        };
      });
      // grouping's noop names this id (decide.ts `syncStatus`)
      this.rows.set(row.id, { ...row, group_request_id: requestId });
    }
  }

  changes() {
    return {
      issues: [...this.touched].map((id) => this.rows.get(id)!),
      history: this.history,
      commands: this.commands,
      early: this.newEarly.filter(
        (e) => !this.earlyDone.some((d) => d.command_id === e.command_id),
      ),
      earlyDone: this.earlyDone,
    };
  }
}
