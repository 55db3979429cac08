import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * Legacy bug reports as they are found in the wild: a file holds one JSON object, an array of
 * them, or JSON Lines. Each record is checked on its own and either becomes a `LegacyReport` or a
 * list of problems naming its file, line and field; one bad record never stops the others. Known
 * aliases of statuses and severities are read as what they mean; the fields Shoal has no place for
 * are kept as they came (`extra`).
 */

export const issueStatuses = [
  'new',
  'triaged',
  'in_progress',
  'awaiting_verification',
  'resolved',
  'closed',
] as const;
export type LegacyStatus = (typeof issueStatuses)[number];
export type CloseReason = 'fixed' | 'wont_fix' | 'duplicate';
export const severities = ['critical', 'high', 'medium', 'low'] as const;
export type Severity = (typeof severities)[number];

const statusAliases: Record<string, { status: LegacyStatus; closeReason?: CloseReason }> = {
  new: { status: 'new' },
  open: { status: 'new' },
  opened: { status: 'new' },
  reported: { status: 'new' },
  triaged: { status: 'triaged' },
  acknowledged: { status: 'triaged' },
  confirmed: { status: 'triaged' },
  in_progress: { status: 'in_progress' },
  wip: { status: 'in_progress' },
  doing: { status: 'in_progress' },
  started: { status: 'in_progress' },
  awaiting_verification: { status: 'awaiting_verification' },
  verifying: { status: 'awaiting_verification' },
  in_review: { status: 'awaiting_verification' },
  resolved: { status: 'resolved' },
  fixed: { status: 'resolved' },
  done: { status: 'resolved' },
  closed: { status: 'closed', closeReason: 'fixed' },
  wont_fix: { status: 'closed', closeReason: 'wont_fix' },
  wontfix: { status: 'closed', closeReason: 'wont_fix' },
  not_planned: { status: 'closed', closeReason: 'wont_fix' },
  duplicate: { status: 'closed', closeReason: 'duplicate' },
};

const severityAliases: Record<string, Severity> = {
  critical: 'critical',
  blocker: 'critical',
  fatal: 'critical',
  p0: 'critical',
  high: 'high',
  major: 'high',
  error: 'high',
  p1: 'high',
  medium: 'medium',
  normal: 'medium',
  warning: 'medium',
  p2: 'medium',
  low: 'low',
  minor: 'low',
  trivial: 'low',
  info: 'low',
  p3: 'low',
};

/** `In Progress`, `in-progress` and `IN_PROGRESS` are one word; `won't fix` is `wont_fix`. */
const wordOf = (value: string) =>
  value
    .trim()
    .toLowerCase()
    .replace(/['’]/g, '')
    .replace(/[\s-]+/g, '_');

const aliased = <T>(aliases: Record<string, T>, what: string) =>
  z.string().transform((value, ctx) => {
    const found = aliases[wordOf(value)];
    if (found === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `"${value}" is not a ${what} Shoal knows (${[...new Set(Object.keys(aliases))].join(', ')})`,
      });
      return z.NEVER;
    }
    return found;
  });

/** A missing required field says so, rather than zod's "expected string, received undefined". */
const required = {
  error: (issue: { input?: unknown }) => (issue.input === undefined ? 'required' : undefined),
};
/** An ISO 8601 date-time, or epoch seconds (below 10^11) or milliseconds. */
const instant = z.union([z.string(), z.number()], required).transform((value, ctx) => {
  const ms =
    typeof value === 'number'
      ? value < 1e11
        ? value * 1000
        : value
      : /^\d{4}-\d{2}-\d{2}/.test(value)
        ? Date.parse(value)
        : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0 || ms > 8.64e15) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a date-time (ISO 8601 or epoch)` });
    return z.NEVER;
  }
  return new Date(ms).toISOString();
});

const text = z.string(required).trim().min(1);
const optionalText = z
  .string()
  .nullish()
  .transform((v) => (v === null || v === undefined || v.trim() === '' ? undefined : v));
const legacyId = z.union([
  z.string().trim().min(1).max(200),
  z.number().int().nonnegative().transform(String),
]);

const legacyEvent = z.object({
  at: instant,
  kind: text.max(100),
  actor: optionalText,
  note: optionalText,
});

const knownFields = {
  id: legacyId.optional(),
  title: text,
  description: optionalText,
  severity: aliased(severityAliases, 'severity').nullish(),
  category: optionalText,
  status: aliased(statusAliases, 'status').nullish(),
  source: optionalText,
  reporter: optionalText,
  assignee: optionalText,
  trace_id: optionalText,
  request_id: optionalText,
  release_sha: z
    .string()
    .regex(/^[0-9a-fA-F]{7,64}$/, 'a commit SHA is 7 to 64 hex digits')
    .nullish(),
  duplicate_of_id: legacyId.nullish(),
  created_at: instant,
  updated_at: instant.nullish(),
  resolved_at: instant.nullish(),
  closed_at: instant.nullish(),
  sla_due_at: instant.nullish(),
  resolution_notes: optionalText,
  commit_shas: z
    .array(z.string().regex(/^[0-9a-fA-F]{7,64}$/, 'a commit SHA is 7 to 64 hex digits'))
    .nullish(),
  events: z.array(legacyEvent).nullish(),
};
const reportSchema = z.object(knownFields);

export type LegacyReport = Omit<z.infer<typeof reportSchema>, 'id'> & {
  /** The legacy id, or one derived from the record's content when it had none. */
  id: string;
  /** Fields Shoal has no place for, as they came. */
  extra: Record<string, unknown>;
};

export interface Located {
  file: string;
  line: number;
}
export interface Problem extends Located {
  field: string;
  problem: string;
}
export type Checked = (Located & { report: LegacyReport }) | { problems: Problem[] };

/** A record's id when it has none: the same content always gets the same one. */
const contentId = (record: unknown) =>
  `sha256:${createHash('sha256').update(JSON.stringify(record)).digest('hex').slice(0, 32)}`;

export function checkRecord(record: unknown, at: Located): Checked {
  if (typeof record !== 'object' || record === null || Array.isArray(record))
    return { problems: [{ ...at, field: '(record)', problem: 'expected a JSON object' }] };
  const parsed = reportSchema.safeParse(record);
  if (!parsed.success)
    return {
      problems: parsed.error.issues.map((issue) => ({
        ...at,
        field: issue.path.length === 0 ? '(record)' : issue.path.map(String).join('.'),
        problem: issue.message,
      })),
    };
  const extra = Object.fromEntries(
    Object.entries(record).filter(([field]) => !(field in knownFields)),
  );
  return {
    ...at,
    report: { ...parsed.data, id: parsed.data.id ?? contentId(record), extra },
  };
}

/** The records of one file's text: an object, an array of objects, or JSON Lines. */
export function recordsOf(file: string, content: string): Checked[] {
  const trimmed = content.trim();
  if (trimmed === '') return [];
  try {
    const whole: unknown = JSON.parse(trimmed);
    if (!Array.isArray(whole))
      return [checkRecord(whole, { file, line: lineAt(content, content.indexOf(trimmed[0]!)) })];
    const starts = elementLines(content);
    return whole.map((record, index) => checkRecord(record, { file, line: starts[index] ?? 1 }));
  } catch {
    // not one JSON document: JSON Lines, where each line stands or falls alone
  }
  return content.split('\n').flatMap((lineText, index): Checked[] => {
    if (lineText.trim() === '') return [];
    const at = { file, line: index + 1 };
    try {
      return [checkRecord(JSON.parse(lineText), at)];
    } catch (error) {
      return [{ problems: [{ ...at, field: '(line)', problem: (error as Error).message }] }];
    }
  });
}

const lineAt = (content: string, index: number) => content.slice(0, index).split('\n').length;

/** The line each element of a top-level JSON array starts on (the text is known to parse). */
function elementLines(content: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectingElement = false;
  for (let i = 0; i < content.length; i++) {
    const c = content[i]!;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (/\s/.test(c)) continue;
    if (depth === 1 && expectingElement && c !== ']') {
      lines.push(line);
      expectingElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectingElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectingElement = true;
  }
  return lines;
}
