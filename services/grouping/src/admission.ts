import type { Occurrence } from '@shoal/contracts';
import { storableText, type PoolClient } from '@shoal/db';
import { metrics } from '@shoal/observability';
import type { IssueTypePolicies } from './issue-types.js';
import { itemOf, type Item } from './items.js';

type HeldFor = 'noise' | 'rate_limit';

interface Candidate {
  key: string;
  project: number;
  hash: string;
  type: number;
  /** This batch's occurrences of the hash. */
  arriving: Item[];
  /** Occurrences held back earlier, still counting. */
  held: { item: Item; heldFor: HeldFor }[];
}

export interface Admission {
  /** Group key → every occurrence the new group starts with (held ones included), oldest first. */
  admitted: Map<string, Item[]>;
  /** This batch's occurrences that were held back instead of making a group. */
  heldBack: Set<Item>;
}

const MINUTE_MS = 60_000;

/**
 * Decides which hashes without a group get one now, per their issue type's noise threshold and
 * new-group rate; what is held back is stored (whole occurrence) in `held_occurrences`, so the group,
 * once created, starts with exact counts and every occurrence's event. Runs under the projects' row
 * locks, which serialise the quota's read-modify-write per project.
 */
export async function admitNewGroups(
  tx: PoolClient,
  arriving: Map<string, Item[]>,
  policies: IssueTypePolicies,
): Promise<Admission> {
  const candidates = await withHeldOccurrences(tx, arriving);
  const admitted = new Map<string, Item[]>();
  const heldBack = new Set<Item>();
  const hold = async (candidate: Candidate, heldFor: HeldFor) => {
    await holdBack(tx, candidate, heldFor);
    for (const item of candidate.arriving) heldBack.add(item);
    metrics.groupingHeldBack.inc({ reason: heldFor }, candidate.arriving.length);
  };

  const overThreshold: { candidate: Candidate; items: Item[] }[] = [];
  for (const candidate of candidates) {
    const { noise } = policies.get(candidate.type) ?? {};
    const all = [...candidate.held.map((h) => h.item), ...candidate.arriving];
    all.sort(byTime);
    if (!noise || candidate.held.some((h) => h.heldFor === 'rate_limit')) {
      overThreshold.push({ candidate, items: all });
      continue;
    }
    // Sentry's noise window: only the occurrences within windowSeconds of the latest one count
    const since = all.at(-1)!.time.getTime() - noise.windowSeconds * 1000;
    const counting = all.filter((item) => item.time.getTime() > since);
    await forgetExpired(tx, candidate, since);
    if (counting.length >= noise.threshold) overThreshold.push({ candidate, items: counting });
    else await hold(candidate, 'noise');
  }

  const limited = overThreshold.filter(
    ({ candidate }) => policies.get(candidate.type)?.newGroupsPerMinute !== undefined,
  );
  const room = await quotaRoom(tx, limited, policies);
  for (const { candidate, items } of overThreshold) {
    const slot = room.get(candidate.key);
    if (slot !== undefined && slot.left-- <= 0) {
      await hold(candidate, 'rate_limit');
      continue;
    }
    if (slot) slot.used++;
    admitted.set(candidate.key, items);
  }
  await spendQuota(tx, room);
  const withHeld = new Set(candidates.filter((c) => c.held.length > 0).map((c) => c.key));
  const released = [...admitted.keys()].filter((key) => withHeld.has(key));
  if (released.length) await releaseHeld(tx, released);
  return { admitted, heldBack };
}

const byTime = (a: Item, b: Item) => a.time.getTime() - b.time.getTime();

const minuteOf = (items: Item[]) =>
  new Date(Math.floor(items.at(-1)!.time.getTime() / MINUTE_MS) * MINUTE_MS).toISOString();

async function withHeldOccurrences(
  tx: PoolClient,
  arriving: Map<string, Item[]>,
): Promise<Candidate[]> {
  const candidates = [...arriving].map(([key, items]) => ({
    key,
    project: items[0]!.project,
    hash: items[0]!.hashes[0]!,
    type: items[0]!.message.value.type,
    arriving: items,
    held: [] as Candidate['held'],
  }));
  const { rows } = await tx.query<{
    project_id: number;
    primary_hash: string;
    message_id: string;
    held_for: HeldFor;
    occurrence: Occurrence;
    trace_id: string | null;
  }>(
    `SELECT project_id, primary_hash, message_id, held_for, occurrence, trace_id FROM held_occurrences
     WHERE (project_id, primary_hash) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
     ORDER BY seen_at, message_id`,
    [candidates.map((c) => c.project), candidates.map((c) => c.hash)],
  );
  const byKey = new Map(candidates.map((c) => [c.key, c]));
  for (const row of rows) {
    const candidate = byKey.get(`${row.project_id}:${row.primary_hash}`)!;
    // a held occurrence stands in for the message it came from: its events get that message's ids
    const source = candidate.arriving[0]!.message;
    const message = {
      ...source,
      value: row.occurrence,
      messageId: row.message_id,
      traceId: row.trace_id ?? undefined,
    };
    candidate.held.push({ item: itemOf(message), heldFor: row.held_for });
  }
  return candidates;
}

async function forgetExpired(tx: PoolClient, candidate: Candidate, since: number) {
  const expired = candidate.held.filter((h) => h.item.time.getTime() <= since);
  if (!expired.length) return;
  await tx.query(
    `DELETE FROM held_occurrences WHERE project_id = $1 AND primary_hash = $2 AND message_id = ANY($3::text[])`,
    [candidate.project, candidate.hash, expired.map((h) => h.item.message.messageId)],
  );
  metrics.groupingNoiseExpired.inc(expired.length);
}

async function holdBack(tx: PoolClient, candidate: Candidate, heldFor: HeldFor) {
  const items = candidate.arriving;
  // the occurrence as JSON text into a json column: kept exactly, NUL and lone surrogates included
  await tx.query(
    `INSERT INTO held_occurrences (project_id, primary_hash, message_id, seen_at, held_for, occurrence, trace_id)
     SELECT $1, $2, r.message_id, r.seen_at, $3, r.occurrence, r.trace_id
     FROM unnest($4::text[], $5::timestamptz[], $6::json[], $7::text[]) AS r(message_id, seen_at, occurrence, trace_id)
     ON CONFLICT DO NOTHING`,
    [
      candidate.project,
      candidate.hash,
      heldFor,
      items.map((i) => i.message.messageId),
      items.map((i) => i.time.toISOString()),
      items.map((i) => JSON.stringify(i.message.value)),
      items.map((i) => storableText(i.message.traceId ?? null)),
    ],
  );
  // over the rate limit the threshold was met: those held for noise no longer expire
  if (heldFor === 'rate_limit')
    await tx.query(
      `UPDATE held_occurrences SET held_for = 'rate_limit' WHERE project_id = $1 AND primary_hash = $2`,
      [candidate.project, candidate.hash],
    );
}

interface Slot {
  project: number;
  type: number;
  minute: string;
  left: number;
  used: number;
}

/** Per candidate over a rate limit: the shared slot of its project, type and minute. */
async function quotaRoom(
  tx: PoolClient,
  limited: { candidate: Candidate; items: Item[] }[],
  policies: IssueTypePolicies,
): Promise<Map<string, Slot>> {
  const room = new Map<string, Slot>();
  if (!limited.length) return room;
  const slots = new Map<string, Slot>();
  for (const { candidate, items } of limited) {
    const minute = minuteOf(items);
    const id = `${candidate.project}|${candidate.type}|${minute}`;
    const slot = slots.get(id) ?? {
      project: candidate.project,
      type: candidate.type,
      minute,
      left: policies.get(candidate.type)!.newGroupsPerMinute!,
      used: 0,
    };
    slots.set(id, slot);
    room.set(candidate.key, slot);
  }
  const list = [...slots.values()];
  const { rows } = await tx.query<{
    project_id: number;
    group_type: number;
    minute: Date;
    created: number;
  }>(
    `SELECT q.project_id, q.group_type, q.minute, q.created FROM group_creation_quota q
     JOIN unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS s(project_id, group_type, minute)
       USING (project_id, group_type, minute)`,
    [list.map((s) => s.project), list.map((s) => s.type), list.map((s) => s.minute)],
  );
  for (const row of rows)
    slots.get(`${row.project_id}|${row.group_type}|${row.minute.toISOString()}`)!.left -=
      row.created;
  return room;
}

async function spendQuota(tx: PoolClient, room: Map<string, Slot>) {
  const used = [...new Set(room.values())].filter((s) => s.used > 0);
  if (!used.length) return;
  await tx.query(
    `INSERT INTO group_creation_quota (project_id, group_type, minute, created)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::bigint[])
     ON CONFLICT (project_id, group_type, minute) DO UPDATE SET created = group_creation_quota.created + EXCLUDED.created,
       updated_at = now()`,
    [
      used.map((s) => s.project),
      used.map((s) => s.type),
      used.map((s) => s.minute),
      used.map((s) => s.used),
    ],
  );
}

async function releaseHeld(tx: PoolClient, keys: string[]) {
  const at = keys.map((k) => k.indexOf(':'));
  await tx.query(
    `DELETE FROM held_occurrences WHERE (project_id, primary_hash) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))`,
    [keys.map((k, i) => Number(k.slice(0, at[i]))), keys.map((k, i) => k.slice(at[i]! + 1))],
  );
}
