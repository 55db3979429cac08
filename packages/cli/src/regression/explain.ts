/**
 * `shoal regression explain`: cases (JSON Lines, or one JSON array) → one decision per case, in
 * order, from the regression service's own pure decision function. A case that does not parse or
 * lacks a field gets an error line naming it; the others are still decided. Unknown keys are ignored.
 */
import {
  decide,
  type DecideOptions,
  type Decision,
  type GroupState,
  type Release,
} from '@shoal/regression-rules';
import { z } from 'zod';

const time = z.iso.datetime({ offset: true });
const version = z.string().min(1);

const caseSchema = z.object({
  releases: z
    .array(
      z.object({
        version,
        date_added: time,
        commits: z.array(z.string()).optional(),
        deleted: z.boolean().optional(),
      }),
    )
    .default([]),
  group: z.object({
    status: z.enum(['unresolved', 'resolved', 'ignored']),
    resolved_at: time.optional(),
    resolution: z
      .object({
        type: z.enum(['in_release', 'in_next_release', 'in_commit', 'now']),
        release: version.nullish(),
        current_release_version: version.nullish(),
        commit: z.string().min(1).nullish(),
        resolved_at: time.optional(),
      })
      .nullish(),
    ignore: z
      .object({
        until_occurrences: z.number().int().positive().optional(),
        until: time.optional(),
        until_escalating: z.boolean().optional(),
      })
      .nullish(),
    occurrences_since_ignored: z.number().int().nonnegative().optional(),
    rate_before_per_hour: z.number().nonnegative().optional(),
    occurrences_last_hour: z.number().int().nonnegative().optional(),
  }),
  event: z.object({ release: version.nullable(), timestamp: time }),
});

export type ExplainLine = Decision | { line: number; error: string };

/** The field a zod issue is about, as a dotted path (`group.resolution.type`), and what is wrong. */
function describeIssue(issue: z.core.$ZodIssue): string {
  const field = issue.path.map(String).join('.') || '(the case)';
  return `${field}: ${issue.message}`;
}

/** One case, already JSON-parsed, decided; or what is wrong with it. */
export function explainCase(raw: unknown, options: DecideOptions): Decision | string {
  const parsed = caseSchema.safeParse(raw);
  if (!parsed.success) return describeIssue(parsed.error.issues[0]!);
  const { releases, group, event } = parsed.data;
  const { resolution, ignore, ...counters } = group;
  let state: GroupState = { ...counters, ignore: ignore ?? null, resolution: null };
  if (resolution) {
    const resolvedAt = resolution.resolved_at ?? group.resolved_at;
    if (!resolvedAt) return 'group.resolution.resolved_at: required (or group.resolved_at)';
    state = { ...state, resolution: { ...resolution, resolved_at: resolvedAt } };
  } else if (group.status === 'resolved') return 'group.resolution: required when resolved';
  return decide(state, event, releases as Release[], options);
}

/** The cases of stdin's text: a JSON array's elements, else one per non-blank line. */
export function* casesOf(text: string): Generator<{ line: number; json: string }> {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    let array: unknown;
    try {
      array = JSON.parse(trimmed);
    } catch {
      // not one array: read it as JSON Lines (a line may start with '[')
    }
    if (Array.isArray(array)) {
      for (const [i, item] of array.entries()) yield { line: i + 1, json: JSON.stringify(item) };
      return;
    }
  }
  for (const [i, line] of text.split('\n').entries())
    if (line.trim() !== '') yield { line: i + 1, json: line };
}

/** Every case of `text`, answered in order. */
export function explainAll(text: string, options: DecideOptions): ExplainLine[] {
  const answers: ExplainLine[] = [];
  for (const { line, json } of casesOf(text)) {
    let raw: unknown;
    try {
      raw = JSON.parse(json);
    } catch (error) {
      answers.push({ line, error: `not JSON: ${(error as Error).message}` });
      continue;
    }
    const answer = explainCase(raw, options);
    answers.push(typeof answer === 'string' ? { line, error: answer } : answer);
  }
  return answers;
}
