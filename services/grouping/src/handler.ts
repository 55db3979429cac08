import type { EntityChange, GroupingCommand, Occurrence, StatusChange } from '@shoal/contracts';
import { storableText, type PoolClient } from '@shoal/db';
import { metrics } from '@shoal/observability';
import {
  PermanentError,
  TransientError,
  type Handler,
  type HandlerContext,
  type Message,
} from '@shoal/kafka-runtime';
import { admitNewGroups } from './admission.js';
import { applyCommands } from './commands.js';
import { shortIdOf } from './fingerprints.js';
import { dedupHintsOf, eventTimestampOf } from './signal.js';
import { changeStatuses } from './status-changes.js';
import type { IssueTypePolicies } from './issue-types.js';
import { batchHasher, groupKeyOf, itemOf, type Item } from './items.js';
import type { GroupingMessage } from './lookups.js';

type Status = 'unresolved' | 'resolved' | 'ignored';

export interface GroupingOptions {
  /** The full name of the group-events topic (namespace included). */
  groupEvents: string;
  issueTypes: IssueTypePolicies;
}

/** Fingerprints' groups this process last saw (`project:hash` → group id) at most this many. */
const MAX_GUESSES = 50_000;

/** Grouping's domain logic over the runtime: one batch of one partition, in the runtime's transaction. */
export function groupingHandler(options: GroupingOptions): Handler<GroupingMessage> {
  // what the batches before found each fingerprint mapped to: a guess, which a batch's one
  // statement checks against group_hashes before it applies (see applyToGroups)
  const guesses = new Map<string, number>();
  return async (batch, tx, ctx) => {
    switch (batch[0]!.topicKey) {
      case 'occurrences':
        return groupOccurrences(
          batch as Message<Occurrence>[],
          tx,
          ctx as HandlerContext<unknown>,
          options,
          guesses,
        );
      case 'statusChanges':
        return changeStatuses(
          batch as Message<StatusChange>[],
          tx,
          ctx as HandlerContext<unknown>,
          options.groupEvents,
        );
      case 'entityChanges':
        return projectEntities(batch as Message<EntityChange>[], tx);
      case 'groupingCommands':
        return applyCommands(
          batch as Message<GroupingCommand>[],
          tx,
          ctx as HandlerContext<unknown>,
        );
      default:
        throw new Error(`grouping does not read ${batch[0]!.topic}`);
    }
  };
}

async function groupOccurrences(
  batch: Message<Occurrence>[],
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
  options: GroupingOptions,
  guesses: Map<string, number>,
) {
  const hash = batchHasher();
  const all = batch.map((m) => itemOf(m, hash));
  const timeless = all.find((i) => Number.isNaN(i.time.getTime()));
  if (timeless)
    throw new PermanentError(
      'processing_error',
      `/detection_time ${timeless.message.value.detection_time} is past the last instant a timestamp holds`,
      timeless.message.offset,
    );
  const pairs = distinctPairs(all);
  // the steady path: every fingerprint of the batch maps to the group it mapped to before, which
  // the one statement checks (and applies nothing when it does not hold)
  let guessed: Map<string, number> | undefined = new Map();
  for (const key of pairs.keys()) {
    const id = guesses.get(key);
    if (id === undefined) {
      guessed = undefined;
      break;
    }
    guessed.set(key, id);
  }
  if (guessed) {
    const groupOf = groupsOf(all, guessed);
    const statusOf = await applyToGroups(
      tx,
      all,
      (i) => groupOf.get(i.key)!,
      guessed,
      [...pairs].map(([key, [project, hash]]) => [project, hash, guessed.get(key)!] as const),
    );
    if (statusOf) return emitGroupEvents(tx, ctx, options, all, groupOf, new Map(), statusOf);
  }
  const grouped = await groupSlowly(tx, options, all, pairs);
  for (const key of pairs.keys()) guesses.delete(key);
  if (!grouped) return;
  if (guesses.size + pairs.size > MAX_GUESSES) guesses.clear();
  for (const [key, id] of grouped.mapped) if (pairs.has(key)) guesses.set(key, id);
  await emitGroupEvents(
    tx,
    ctx,
    options,
    grouped.items,
    grouped.groupOf,
    grouped.created,
    grouped.statusOf,
  );
}

/**
 * The batch's occurrences by what PostgreSQL says of their fingerprints now: those with a discarded
 * one dropped, new groups admitted and created, then applied. Returns what was applied (undefined
 * when nothing was) and each of the batch's fingerprints' groups (`project:hash` → group id).
 */
async function groupSlowly(
  tx: PoolClient,
  options: GroupingOptions,
  all: Item[],
  pairs: Map<string, readonly [number, string]>,
) {
  const known = await knownHashes(tx, [...pairs.values()]);
  let items = await dropDiscarded(tx, all, known.discarded);
  if (!items.length) return undefined;

  const groupOf = groupsOf(items, known.mapped);
  const missing = items.filter((i) => !groupOf.has(groupKeyOf(i)));
  // group key → the item that created it, and the group's short id
  const created = new Map<string, { item: Item; shortId: string }>();
  if (missing.length) {
    // serialise creation per project: lock the projects' rows, look again, then number the new groups
    const needing = [...new Set(missing.map((i) => i.project))].sort((a, b) => a - b);
    await tx.query('SELECT id FROM projects WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE', [
      needing,
    ]);
    const again = await mappedHashes(tx, missing);
    for (const [pair, id] of again) known.mapped.set(pair, id);
    for (const [key, id] of groupsOf(missing, again)) groupOf.set(key, id);
    const arriving = new Map<string, Item[]>();
    for (const item of missing) {
      const key = groupKeyOf(item);
      if (groupOf.has(key)) continue;
      const list = arriving.get(key);
      if (list) list.push(item);
      else arriving.set(key, [item]);
    }
    const { admitted, heldBack } = arriving.size
      ? await admitNewGroups(tx, arriving, options.issueTypes)
      : { admitted: new Map<string, Item[]>(), heldBack: new Set<Item>() };
    // held-back occurrences leave the batch; those held earlier join their new group now
    const inBatch = new Set(items);
    items = items.filter((i) => !heldBack.has(i));
    for (const list of admitted.values()) items.push(...list.filter((i) => !inBatch.has(i)));
    // the oldest occurrence of each new group creates it
    const toCreate = new Map([...admitted].map(([key, list]) => [key, list[0]!]));
    for (const [key, { id, shortId }] of await createGroups(tx, toCreate)) {
      groupOf.set(key, id);
      created.set(key, { item: toCreate.get(key)!, shortId });
    }
  }
  if (!items.length) return undefined;
  const groupIdOf = (i: Item) => groupOf.get(groupKeyOf(i))!;
  const statusOf = (await applyToGroups(tx, items, groupIdOf, known.mapped))!;
  // each fingerprint now maps to the group it had, else to its occurrence's
  const mapped = new Map(known.mapped);
  for (const i of items)
    for (let k = 0; k < i.hashes.length; k++) {
      const pair = k === 0 ? i.key : pairKey(i.project, i.hashes[k]!);
      if (!mapped.has(pair)) mapped.set(pair, groupIdOf(i));
    }
  return { items, groupOf, created, statusOf, mapped };
}

/**
 * The batch's group events: `group_created` for each group it created, `release_seen`, and
 * `occurrence_grouped` for each occurrence on a group that is not unresolved.
 */
async function emitGroupEvents(
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
  options: GroupingOptions,
  items: Item[],
  groupOf: Map<string, number>,
  created: Map<string, { item: Item; shortId: string }>,
  statusOf: Map<number, Status>,
) {
  const groupIdOf = (i: Item) => groupOf.get(groupKeyOf(i))!;

  for (const [key, { item, shortId }] of created) {
    const id = groupOf.get(key)!;
    const { value } = item.message;
    ctx.emit(item.message, (eventId) => ({
      topic: options.groupEvents,
      key: String(id),
      value: {
        event_id: eventId,
        event_type: 'group_created',
        occurred_at: item.time.toISOString(),
        group_id: id,
        project_id: item.project,
        short_id: shortId,
        primary_hash: item.hashes[0]!,
        primary_fingerprint: value.fingerprint[0],
        group_type: value.type,
        occurrence_id: value.id,
        level: value.level ?? 'info',
        title: value.issue_title,
        ...(value.subtitle !== undefined ? { subtitle: value.subtitle } : {}),
        culprit: value.culprit ?? null,
        release: item.release,
        environment: item.environment,
        status: 'unresolved',
        ...(item.message.traceId ? { trace_id: item.message.traceId } : {}),
        dedup_hints: dedupHintsOf(value),
      },
    }));
  }
  await emitReleasesSeen(tx, ctx, options, items, groupIdOf);
  // an occurrence on a resolved or ignored group is a regression or escalation candidate; on an
  // unresolved one it is only counted, and group_activity reports the counts
  for (const i of items) {
    const id = groupIdOf(i);
    const status = statusOf.get(id)!;
    if (status === 'unresolved') continue;
    const at = eventTimestampOf(i.message.value);
    ctx.emit(i.message, (eventId) => ({
      topic: options.groupEvents,
      key: String(id),
      value: {
        event_id: eventId,
        event_type: 'occurrence_grouped',
        occurred_at: i.time.toISOString(),
        group_id: id,
        project_id: i.project,
        primary_hash: i.hashes[0]!,
        occurrence_id: i.message.value.id,
        detection_time: i.message.value.detection_time,
        ...(at ? { event_timestamp: at } : {}),
        level: i.message.value.level ?? 'info',
        title: i.message.value.issue_title,
        release: i.release,
        environment: i.environment,
        status,
        ...(i.message.traceId ? { trace_id: i.message.traceId } : {}),
      },
    }));
  }
}

/**
 * `release_seen` for each release of the batch its project had not seen: recorded with the time of
 * its earliest occurrence here, the event emitted on that occurrence's behalf. Two batches seeing a
 * release at once meet at the unique index: the second waits and then finds it recorded.
 */
async function emitReleasesSeen(
  tx: PoolClient,
  ctx: HandlerContext<unknown>,
  options: GroupingOptions,
  items: Item[],
  groupIdOf: (i: Item) => number,
) {
  const first = new Map<string, Item>();
  for (const i of items) {
    if (i.release === null) continue;
    const key = `${i.project}:${storableText(i.release)}`;
    const seen = first.get(key);
    if (!seen || i.time < seen.time) first.set(key, i);
  }
  if (!first.size) return;
  // in one order, so that two batches inserting the same releases cannot deadlock
  const list = [...first].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, i]) => i);
  // matched back in SQL, by what was stored: two versions the client encodes alike (lone
  // surrogates) are one release, seen once
  const { rows } = await tx.query<{ i: number }>(
    `WITH input AS (
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS x(project_id, version, first_seen, i)
     ), inserted AS (
       INSERT INTO releases_seen (project_id, version, first_seen)
       SELECT project_id, version, first_seen FROM input ORDER BY i
       ON CONFLICT (project_id, md5(version)) DO NOTHING RETURNING project_id, version
     )
     SELECT min(input.i)::int AS i FROM inserted JOIN input USING (project_id, version)
     GROUP BY inserted.project_id, inserted.version ORDER BY 1`,
    [
      list.map((i) => i.project),
      list.map((i) => storableText(i.release)),
      list.map((i) => i.time.toISOString()),
    ],
  );
  for (const row of rows) {
    const item = list[row.i - 1]!;
    const id = groupIdOf(item);
    ctx.emit(item.message, (eventId) => ({
      topic: options.groupEvents,
      key: String(id),
      value: {
        event_id: eventId,
        event_type: 'release_seen',
        occurred_at: item.time.toISOString(),
        group_id: id,
        project_id: item.project,
        occurrence_id: item.message.value.id,
        release: item.release,
      },
    }));
  }
}

/** `project:hash`, as the known pairs are keyed. */
const pairKey = (project: number | string, hash: string) => `${project}:${hash}`;

/** Each (project, hash) of the items once, by `project:hash`: a batch of one fingerprint asks about one pair. */
function distinctPairs(items: Item[]): Map<string, readonly [number, string]> {
  const pairs = new Map<string, readonly [number, string]>();
  for (const i of items) {
    // the primary pair's key is the item's own (made once)
    if (!pairs.has(i.key)) pairs.set(i.key, [i.project, i.hashes[0]!]);
    for (let k = 1; k < i.hashes.length; k++) {
      const h = i.hashes[k]!;
      pairs.set(pairKey(i.project, h), [i.project, h]);
    }
  }
  return pairs;
}

/**
 * One statement for what the batch's fingerprints already are: discarded (a tombstone) or mapped to
 * a group (`project:hash` → group id); it also makes the batch's projects (first sight). A group
 * mapped here may be deleted before the batch locks it: `applyToGroups` retries the batch then.
 */
async function knownHashes(
  tx: PoolClient,
  pairs: (readonly [number, string])[],
): Promise<{ discarded: Set<string>; mapped: Map<string, number> }> {
  const { rows } = await tx.query<{ project_id: string; hash: string; group_id: number | null }>(
    `WITH pairs AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS p(project_id, hash)),
     made AS (INSERT INTO projects (id) SELECT DISTINCT project_id FROM pairs ORDER BY 1 ON CONFLICT DO NOTHING)
     SELECT project_id::text, hash, NULL::bigint AS group_id FROM discarded_hashes
     WHERE (project_id, hash) IN (SELECT * FROM pairs)
     UNION ALL
     SELECT project_id::text, hash, group_id FROM group_hashes WHERE (project_id, hash) IN (SELECT * FROM pairs)`,
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
  );
  const discarded = new Set<string>();
  const mapped = new Map<string, number>();
  for (const r of rows)
    if (r.group_id === null) discarded.add(pairKey(r.project_id, r.hash));
    else mapped.set(pairKey(r.project_id, r.hash), Number(r.group_id));
  return { discarded, mapped };
}

/**
 * Occurrences with a discarded fingerprint (any of theirs) leave the batch, each counted once, on
 * its first discarded hash and in `shoal_grouping_discarded_total`: never grouped, no event.
 */
async function dropDiscarded(
  tx: PoolClient,
  items: Item[],
  discarded: Set<string>,
): Promise<Item[]> {
  if (!discarded.size) return items;
  const dropped = new Map<string, { project: number; hash: string; n: number }>();
  const kept = items.filter((i) => {
    const hash = i.hashes.find((h) => discarded.has(pairKey(i.project, h)));
    if (hash === undefined) return true;
    const key = pairKey(i.project, hash);
    const d = dropped.get(key) ?? { project: i.project, hash, n: 0 };
    d.n++;
    dropped.set(key, d);
    return false;
  });
  const list = [...dropped.values()];
  await tx.query(
    `UPDATE discarded_hashes d SET times_dropped = d.times_dropped + x.n
     FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS x(project_id, hash, n)
     WHERE (d.project_id, d.hash) = (x.project_id, x.hash)`,
    [list.map((d) => d.project), list.map((d) => d.hash), list.map((d) => d.n)],
  );
  for (const d of list) metrics.groupingDiscarded.inc({ project: String(d.project) }, d.n);
  return kept;
}

/**
 * One statement over the groups the batch joins (existing and just created): locks them in id
 * order and returns their statuses; maps the fingerprints not mapped yet to them; adds the batch to
 * their aggregates (the latest occurrence's level, title and culprit win) and to their
 * environments' counts. The lock comes first (the other parts touch only locked groups). A group
 * deleted since it was found (a row lock re-reads it) has had its fingerprints freed: the batch is
 * retried, and then starts a new group for them.
 * With `guessed` (every fingerprint of the batch and the group it is guessed to map to), the same
 * statement first checks that each maps to that group in group_hashes and none is discarded, as
 * knownHashes would have found them: when one does not, it locks and writes nothing, and this
 * returns undefined.
 */
async function applyToGroups(
  tx: PoolClient,
  items: Item[],
  groupIdOf: (i: Item) => number,
  mapped: Map<string, number>,
  guessed?: (readonly [number, string, number])[],
): Promise<Map<number, Status> | undefined> {
  const byGroup = new Map<number, Item[]>();
  const hashRows = new Map<string, readonly [number, string, number]>();
  const envs = new Map<string, { id: number; env: string; n: number; first: Date; last: Date }>();
  for (const i of items) {
    const id = groupIdOf(i);
    const list = byGroup.get(id);
    if (list) list.push(i);
    else byGroup.set(id, [i]);
    // every fingerprint of an occurrence maps to its group: written only for those not mapped yet
    for (let k = 0; k < i.hashes.length; k++) {
      const hash = i.hashes[k]!;
      const pair = k === 0 ? i.key : pairKey(i.project, hash);
      if (!mapped.has(pair) && !hashRows.has(pair)) hashRows.set(pair, [i.project, hash, id]);
    }
    if (!i.environment) continue;
    const key = `${id}\u0000${i.environment}`;
    const e = envs.get(key) ?? { id, env: i.environment, n: 0, first: i.time, last: i.time };
    e.n++;
    if (i.time < e.first) e.first = i.time;
    if (i.time > e.last) e.last = i.time;
    envs.set(key, e);
  }
  const aggregates = [...byGroup].map(([id, list]) => {
    // in one pass, as a stable sort by time would pick: the latest (the last of equal times), the
    // first release (the first of equal times)
    let first = list[0]!;
    let latest = list[0]!;
    let released: Item | undefined;
    for (const i of list) {
      if (i.time < first.time) first = i;
      if (i.time >= latest.time) latest = i;
      if (i.release && (!released || i.time < released.time)) released = i;
    }
    return {
      id,
      n: list.length,
      first: first.time.toISOString(),
      last: latest.time.toISOString(),
      level: latest.message.value.level ?? 'info',
      title: storableText(latest.message.value.issue_title),
      culprit: storableText(latest.message.value.culprit ?? null),
      release: storableText(released?.release ?? null),
      lastRelease: storableText(latest.release),
      lastTrace: storableText(latest.message.traceId ?? null),
    };
  });
  const hashes = [...hashRows.values()];
  const environments = [...envs.values()];
  const ids = [...byGroup.keys()];
  const { rows } = await tx.query<{ id: string | null; status: Status }>(
    `WITH ${
      guessed
        ? `guessed AS (SELECT * FROM unnest($20::bigint[], $21::text[], $22::bigint[]) AS v(project_id, hash, group_id)),
     verified AS (
       SELECT (SELECT count(*) FROM guessed JOIN group_hashes h USING (project_id, hash, group_id)) = (SELECT count(*) FROM guessed)
         AND NOT EXISTS (SELECT 1 FROM discarded_hashes WHERE (project_id, hash) IN (SELECT project_id, hash FROM guessed)) AS ok
     ), `
        : ''
    }locked AS (
       SELECT id, status FROM groups WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL${guessed ? ' AND (SELECT ok FROM verified)' : ''}
       ORDER BY id FOR NO KEY UPDATE
     ), hashes AS (
       INSERT INTO group_hashes (project_id, hash, group_id)
       SELECT * FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS h(project_id, hash, group_id)
       WHERE h.group_id IN (SELECT id FROM locked)
       ON CONFLICT DO NOTHING
     ), aggregates AS (
       UPDATE groups g SET
         times_seen = g.times_seen + a.n,
         first_seen = least(g.first_seen, a.first),
         last_seen = greatest(g.last_seen, a.last),
         level = CASE WHEN a.last >= g.last_seen THEN a.level ELSE g.level END,
         title = CASE WHEN a.last >= g.last_seen THEN a.title ELSE g.title END,
         culprit = CASE WHEN a.last >= g.last_seen THEN coalesce(a.culprit, g.culprit) ELSE g.culprit END,
         first_release = coalesce(g.first_release, a.release),
         last_release = CASE WHEN a.last >= g.last_seen THEN a.last_release ELSE g.last_release END,
         last_trace_id = CASE WHEN a.last >= g.last_seen THEN a.last_trace ELSE g.last_trace_id END
       FROM unnest($5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
         AS a(id, n, first, last, level, title, culprit, release, last_release, last_trace)
       WHERE g.id = a.id AND a.id IN (SELECT id FROM locked)
     ), environments AS (
       INSERT INTO group_environments (group_id, environment, times_seen, first_seen, last_seen)
       SELECT * FROM unnest($15::bigint[], $16::text[], $17::bigint[], $18::timestamptz[], $19::timestamptz[])
         AS e(group_id, environment, times_seen, first_seen, last_seen)
       WHERE e.group_id IN (SELECT id FROM locked)
       ON CONFLICT (group_id, md5(environment)) DO UPDATE SET
         times_seen = group_environments.times_seen + EXCLUDED.times_seen,
         first_seen = least(group_environments.first_seen, EXCLUDED.first_seen),
         last_seen = greatest(group_environments.last_seen, EXCLUDED.last_seen)
     )
     SELECT id, status FROM locked${guessed ? ' UNION ALL SELECT NULL, NULL FROM verified WHERE NOT ok' : ''}`,
    [
      ids,
      hashes.map((r) => r[0]),
      hashes.map((r) => r[1]),
      hashes.map((r) => r[2]),
      aggregates.map((a) => a.id),
      aggregates.map((a) => a.n),
      aggregates.map((a) => a.first),
      aggregates.map((a) => a.last),
      aggregates.map((a) => a.level),
      aggregates.map((a) => a.title),
      aggregates.map((a) => a.culprit),
      aggregates.map((a) => a.release),
      aggregates.map((a) => a.lastRelease),
      aggregates.map((a) => a.lastTrace),
      environments.map((e) => e.id),
      environments.map((e) => storableText(e.env)),
      environments.map((e) => e.n),
      environments.map((e) => e.first.toISOString()),
      environments.map((e) => e.last.toISOString()),
      ...(guessed
        ? [guessed.map((g) => g[0]), guessed.map((g) => g[1]), guessed.map((g) => g[2])]
        : []),
    ],
  );
  if (rows.some((r) => r.id === null)) return undefined;
  // a group deleted meanwhile: the statement's other parts skipped it, and the batch rolls back
  if (rows.length !== ids.length)
    throw new TransientError(
      'a group this batch joins was deleted meanwhile; retrying, its fingerprints are free now',
    );
  return new Map(rows.map((r) => [Number(r.id), r.status]));
}

/**
 * Inserts one group per key, numbered from each project's counter (its row is locked by now); returns
 * each key's group id and short id.
 */
async function createGroups(
  tx: PoolClient,
  toCreate: Map<string, Item>,
): Promise<Map<string, { id: number; shortId: string }>> {
  if (!toCreate.size) return new Map();
  const perProject = new Map<number, number>();
  for (const item of toCreate.values())
    perProject.set(item.project, (perProject.get(item.project) ?? 0) + 1);
  const { rows: counters } = await tx.query<{ id: number; next_short_number: number }>(
    `UPDATE projects p SET next_short_number = p.next_short_number + n.count
     FROM unnest($1::bigint[], $2::bigint[]) AS n(id, count) WHERE p.id = n.id RETURNING p.id, p.next_short_number`,
    [[...perProject.keys()], [...perProject.values()]],
  );
  const nextNumber = new Map(
    counters.map((c) => [c.id, c.next_short_number - perProject.get(c.id)! + 1]),
  );
  const rows = [...toCreate.values()].map((item) => {
    const number = nextNumber.get(item.project)!;
    nextNumber.set(item.project, number + 1);
    return { item, number };
  });
  const { rows: inserted } = await tx.query<{
    id: number;
    project_id: number;
    primary_hash: string;
    short_id: string;
  }>(
    `INSERT INTO groups (project_id, primary_hash, short_number, short_id, group_type, level, title, culprit, first_seen, last_seen)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $9::timestamptz[])
     RETURNING id, project_id, primary_hash, short_id`,
    [
      rows.map((r) => r.item.project),
      rows.map((r) => r.item.hashes[0]),
      rows.map((r) => r.number),
      rows.map((r) => shortIdOf(r.item.project, r.number)),
      rows.map((r) => r.item.message.value.type),
      rows.map((r) => r.item.message.value.level ?? 'info'),
      rows.map((r) => storableText(r.item.message.value.issue_title)),
      rows.map((r) => storableText(r.item.message.value.culprit ?? null)),
      rows.map((r) => r.item.time.toISOString()),
    ],
  );
  return new Map(
    inserted.map((g) => [
      `${g.project_id}:${g.primary_hash}`,
      { id: Number(g.id), shortId: g.short_id },
    ]),
  );
}

/** The group each of the items' fingerprints maps to (`project:hash` → group id). */
async function mappedHashes(tx: PoolClient, items: Item[]): Promise<Map<string, number>> {
  const pairs = [...distinctPairs(items).values()];
  const { rows } = await tx.query<{ project_id: number; hash: string; group_id: number }>(
    'SELECT project_id, hash, group_id FROM group_hashes WHERE (project_id, hash) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))',
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
  );
  return new Map(rows.map((r) => [pairKey(r.project_id, r.hash), Number(r.group_id)]));
}

/** The groups of items by any of their fingerprints' hashes, keyed `project:primary hash`. */
function groupsOf(items: Item[], mapped: Map<string, number>): Map<string, number> {
  const result = new Map<string, number>();
  for (const i of items) {
    // the first of its hashes that maps (the primary's key is the item's own)
    let id = mapped.get(i.key);
    for (let k = 1; id === undefined && k < i.hashes.length; k++)
      id = mapped.get(pairKey(i.project, i.hashes[k]!));
    if (id !== undefined) result.set(i.key, id);
  }
  return result;
}

/**
 * A project's, detector's or group's id as its entity change carries it (text): digits JavaScript holds
 * exactly, else the change is refused naming the field; never rounded to another entity's id.
 */
function numericEntityId({ value, offset }: Message<EntityChange>): number {
  const id = /^[0-9]{1,16}$/.test(value.entity_id) ? Number(value.entity_id) : NaN;
  if (!Number.isSafeInteger(id) || id < 1)
    throw new PermanentError(
      'schema_invalid',
      `/entity_id of a ${value.entity_kind} must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(value.entity_id.slice(0, 40))}`,
      offset,
    );
  return id;
}

/** A release's project: releases are per project. */
function releaseProject({ value, offset }: Message<EntityChange>): number {
  if (value.project_id === undefined)
    throw new PermanentError(
      'schema_invalid',
      `/project_id is required for a release (${JSON.stringify(value.entity_id.slice(0, 40))})`,
      offset,
    );
  return value.project_id;
}

/**
 * Sentry's delete (`discard` false) or delete-and-discard of a group: its row becomes a tombstone and
 * its fingerprints are freed, or, discarded, tombstoned in `discarded_hashes`. Its row lock makes an
 * occurrence batch joining the group wait, then retry (lockLiveGroups).
 */
export async function deleteGroup(tx: PoolClient, id: number, at: string, discard: boolean) {
  await tx.query('UPDATE groups SET deleted_at = coalesce(deleted_at, $2) WHERE id = $1', [id, at]);
  await tx.query(
    `WITH freed AS (DELETE FROM group_hashes WHERE group_id = $1 RETURNING project_id, hash)
     INSERT INTO discarded_hashes (project_id, hash, group_id, discarded_at)
     SELECT project_id, hash, $1, $2 FROM freed WHERE $3 ON CONFLICT DO NOTHING`,
    [id, at, discard],
  );
}

/**
 * The projection of projects, environments, detectors and releases (`deleted_at` a tombstone,
 * `discarded` a deletion too; `created`/`restored` clear it), and the deletion of groups (deleteGroup;
 * `restored` lifts a discarded group's fingerprint tombstones, its id stays a tombstone).
 */
async function projectEntities(batch: Message<EntityChange>[], tx: PoolClient) {
  for (const message of batch) {
    const { value } = message;
    const deletedAt =
      value.change === 'deleted' || value.change === 'discarded' ? value.occurred_at : null;
    switch (value.entity_kind) {
      case 'project':
        await tx.query(
          'INSERT INTO projects (id, deleted_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at',
          [numericEntityId(message), deletedAt],
        );
        break;
      case 'environment':
        await tx.query(
          `INSERT INTO environments (project_id, name, deleted_at) VALUES ($1, $2, $3)
           ON CONFLICT (project_id, md5(name)) DO UPDATE SET deleted_at = EXCLUDED.deleted_at`,
          [value.project_id ?? null, storableText(value.entity_id), deletedAt],
        );
        break;
      case 'detector':
        await tx.query(
          'INSERT INTO detectors (id, project_id, deleted_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at',
          [numericEntityId(message), value.project_id ?? null, deletedAt],
        );
        break;
      case 'release':
        await tx.query(
          `INSERT INTO releases (project_id, version, released_at, commits, deleted_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (project_id, md5(version)) DO UPDATE SET
             released_at = coalesce(EXCLUDED.released_at, releases.released_at),
             commits = coalesce(EXCLUDED.commits, releases.commits),
             deleted_at = EXCLUDED.deleted_at`,
          [
            releaseProject(message),
            storableText(value.entity_id),
            value.released_at ?? null,
            value.commits?.map((c) => storableText(c)) ?? null,
            deletedAt,
          ],
        );
        break;
      case 'group':
        if (deletedAt)
          await deleteGroup(tx, numericEntityId(message), deletedAt, value.change === 'discarded');
        else if (value.change === 'restored')
          await tx.query('DELETE FROM discarded_hashes WHERE group_id = $1', [
            numericEntityId(message),
          ]);
        break;
    }
  }
}
