import type { GroupEvent, Occurrence } from '@shoal/contracts';

/**
 * What a group event says about an occurrence beyond its group: dedup hints (Shoal's when the
 * occurrence gives them, else derived from Sentry's fields) and its event's timestamp. Pure: it
 * reads the occurrence only.
 */

type DedupHints = NonNullable<GroupEvent['dedup_hints']>;

/** How many in-app frames a derived hint keeps, innermost first. */
export const TOP_FRAMES = 5;

interface Frame {
  in_app?: unknown;
  function?: unknown;
  filename?: unknown;
  module?: unknown;
  lineno?: unknown;
}

const text = (v: unknown): string | undefined =>
  typeof v === 'string' && v.length > 0 ? v : undefined;

/** `function file:line`, as Shoal's own hints write a frame. */
function frameText(frame: Frame): string | undefined {
  const name = text(frame.function);
  const where = text(frame.filename) ?? text(frame.module);
  if (!name && !where) return undefined;
  const line = typeof frame.lineno === 'number' ? `:${frame.lineno}` : '';
  return [name, where && `${where}${line}`].filter(Boolean).join(' ');
}

/** The embedded event's in-app frames, innermost first: its last exception's stack, else its own. */
function inAppFrames(event: Record<string, unknown> | undefined): string[] {
  if (!event) return [];
  const values = (event.exception as { values?: unknown } | undefined)?.values;
  const last = Array.isArray(values) ? (values.at(-1) as { stacktrace?: unknown }) : undefined;
  const stack = (last?.stacktrace ?? event.stacktrace) as { frames?: unknown } | undefined;
  if (!Array.isArray(stack?.frames)) return [];
  return (stack.frames as Frame[])
    .filter((f) => f && typeof f === 'object' && f.in_app === true)
    .reverse()
    .map(frameText)
    .filter((f): f is string => f !== undefined)
    .slice(0, TOP_FRAMES);
}

/**
 * The dedup hints of a group's first occurrence: `shoal.dedup_hints` as given, else message ← the
 * issue title, component ← the culprit, route ← the event's transaction, stack_frames ← its top
 * in-app frames.
 */
export function dedupHintsOf(occurrence: Occurrence): DedupHints {
  if (occurrence.shoal?.dedup_hints) return occurrence.shoal.dedup_hints;
  const event = occurrence.event as Record<string, unknown> | undefined;
  const component = text(occurrence.culprit);
  const route = text(event?.transaction);
  const frames = inAppFrames(event);
  return {
    message: occurrence.issue_title,
    ...(component ? { component } : {}),
    ...(route ? { route } : {}),
    ...(frames.length ? { stack_frames: frames } : {}),
  };
}

/**
 * The embedded event's timestamp (epoch seconds or a date string), when it is an instant a
 * date-time writes (years 0 to 9999); any other is left out rather than failing the occurrence.
 */
export function eventTimestampOf(occurrence: Occurrence): string | undefined {
  const at = occurrence.event?.timestamp;
  if (at === undefined) return undefined;
  const time = typeof at === 'number' ? new Date(at * 1000) : new Date(at);
  const year = time.getUTCFullYear();
  return year >= 0 && year <= 9999 ? time.toISOString() : undefined;
}
