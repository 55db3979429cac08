/**
 * The fuzz run's checks over what every case became: on the real `.dlq` topics (matched by the
 * `shoal.fuzz.case` header dead letters keep), in the processed ledger and in the failures table,
 * and in the runtime's held and parked messages.
 */
import { dlqTopic, type TopicKey } from '@shoal/contracts';
import { DLQ_HEADER } from '@shoal/kafka-runtime';
import { readAll, type TopicRecord } from '@shoal/testing';
import { CASE_HEADER, outcomeText, type FuzzCase } from './cases.js';
import type { Check } from './engine.js';
import { ledgerOf, type End, type Run } from './progress.js';

export interface KindResult {
  kind: string;
  topic: TopicKey;
  expect: string;
  sent: number;
  ok: number;
  /** Up to three examples of what happened instead. */
  wrong: string[];
}

/**
 * Each bad case in its topic's dead-letter topic exactly once, with its reason, entity and original
 * coordinates, and not applied; each case expected applied in the ledger and not dead-lettered.
 */
export async function checkEachCase(
  run: Run,
  cases: FuzzCase[],
): Promise<{ check: Check; kinds: KindResult[] }> {
  const dlq = new Map<string, TopicRecord[]>();
  const strays: string[] = [];
  for (const topic of run.target.inputs) {
    for (const record of await readAll(dlqTopic(run.ns.topics[topic]))) {
      const id = record.headers[CASE_HEADER];
      if (!id) strays.push(`${topic} offset ${record.headers[DLQ_HEADER.originalOffset]}`);
      else dlq.set(id, [...(dlq.get(id) ?? []), record]);
    }
  }
  const ledger = await ledgerOf(run);
  const byKind = new Map<string, KindResult>();
  for (const c of cases) {
    const name = `${c.topic}\u0000${c.kind}`;
    const result = byKind.get(name) ?? {
      kind: c.kind,
      topic: c.topic,
      expect: outcomeText(c.expect),
      sent: 0,
      ok: 0,
      wrong: [],
    };
    byKind.set(name, result);
    result.sent++;
    const id = run.messageIdOf(c);
    const applied = id !== undefined && ledger.has(id);
    const problem =
      dlqProblem(c, dlq.get(c.id) ?? [], run.ns.topics[c.topic]) ??
      ('applied' in c.expect
        ? id !== undefined && !applied
          ? 'expected applied, not applied'
          : undefined
        : applied
          ? `expected ${outcomeText(c.expect)}, applied`
          : undefined);
    if (problem === undefined) result.ok++;
    else if (result.wrong.length < 3) result.wrong.push(`${c.id}: ${problem}`);
  }
  const kinds = [...byKind.values()];
  const differ = kinds.filter((k) => k.ok !== k.sent);
  const bad = cases.filter((c) => !('applied' in c.expect)).length;
  return {
    kinds,
    check: {
      name: 'each bad message dead-lettered exactly once with its reason, each good one applied',
      ok: differ.length === 0 && strays.length === 0,
      detail:
        differ.length || strays.length
          ? `${differ.length} of ${kinds.length} kinds differ${strays.length ? `; ${strays.length} dead letters of no fuzz case` : ''}`
          : `${bad} dead letters, ${kinds.length} kinds`,
    },
  };
}

/** What is wrong with the dead letters of `c` (undefined: nothing). */
function dlqProblem(c: FuzzCase, records: TopicRecord[], topic: string): string | undefined {
  const h = records[0]?.headers;
  if ('applied' in c.expect)
    return h
      ? `expected applied, dead-lettered as ${h[DLQ_HEADER.reason]}: ${h[DLQ_HEADER.errorMessage]?.slice(0, 200)}`
      : undefined;
  if (!h) return `expected ${outcomeText(c.expect)}, not dead-lettered`;
  if (records.length > 1) return `dead-lettered ${records.length} times`;
  const got = `${h[DLQ_HEADER.reason]}${h[DLQ_HEADER.entity] ? `(${h[DLQ_HEADER.entity]})` : ''}`;
  if (got !== outcomeText(c.expect))
    return `expected ${outcomeText(c.expect)}, got ${got}: ${h[DLQ_HEADER.errorMessage]?.slice(0, 200)}`;
  if (h[DLQ_HEADER.originalTopic] !== topic || h[DLQ_HEADER.originalOffset] === undefined)
    return `original topic/offset headers missing or wrong (${h[DLQ_HEADER.originalTopic]})`;
  return undefined;
}

/** The processed ledger holds exactly the applied messages' ids (each applied once, none else). */
export async function checkLedger(run: Run, applied: FuzzCase[]): Promise<Check> {
  const expected = new Set(applied.map((c) => run.messageIdOf(c)!));
  const ledger = await ledgerOf(run);
  const missing = [...expected].filter((id) => !ledger.has(id));
  const extra = [...ledger].filter((id) => !expected.has(id));
  return {
    name: 'the processed ledger holds exactly the applied messages',
    ok: missing.length === 0 && extra.length === 0,
    detail: `${ledger.size} entries, ${expected.size} expected; missing ${missing.length} ${missing.slice(0, 3).join(' ')}, extra ${extra.length} ${extra.slice(0, 3).join(' ')}`,
  };
}

/** One row in the failures table per bad message. */
export async function checkFailureRows(run: Run, bad: number): Promise<Check> {
  const { rows } = await run.db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${run.target.table('message_failures')} WHERE consumer_group = $1`,
    [run.group],
  );
  return {
    name: 'one failure row per bad message',
    ok: rows[0]!.n === bad,
    detail: `${rows[0]!.n} rows, ${bad} bad messages`,
  };
}

/** Before their announcement, every late message was held for its entity or parked behind a held one. */
export function checkLateWaited(sent: number, waiting: { held: number; parked: number }): Check {
  return {
    name: 'each message naming an entity not yet announced was held, or parked behind a held one',
    ok: waiting.held + waiting.parked === sent && (sent === 0 || waiting.held > 0),
    detail: `${sent} sent: ${waiting.held} held, ${waiting.parked} parked`,
  };
}

/** At the end nothing waits: every held message was applied or dead-lettered, every parked key drained. */
export function checkNothingWaits(end: End): Check {
  return {
    name: 'nothing is left held or parked',
    ok: end.held === 0 && end.parked === 0,
    detail: `${end.held} held, ${end.parked} parked`,
  };
}
