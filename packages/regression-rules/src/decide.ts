/**
 * Whether an occurrence on a resolved or ignored group brings it back: a pure function of the
 * group's resolution (or ignore), the project's releases and the occurrence, with no I/O. The
 * regression service and `shoal regression explain` call the same function. Sentry's rules
 * (`groupresolution.py` `has_resolution`, `event_manager.py` `_handle_regression`), plus: an
 * occurrence from before the resolution never regresses, deleted releases keep their place in the
 * order, and plain `1.2.3` is a semantic version as well as `package@1.2.3`.
 */
import semver from 'semver';

export type ResolutionType = 'in_release' | 'in_next_release' | 'in_commit' | 'now';

export interface Release {
  version: string;
  /** When the project first had it: first seen in an occurrence, or announced, whichever came first. */
  date_added: string;
  /** The commits it contains (announced with the release). */
  commits?: string[];
  /** A deleted release stays, as a tombstone, for ordering. */
  deleted?: boolean;
}

export interface Resolution {
  type: ResolutionType;
  release?: string | null;
  current_release_version?: string | null;
  commit?: string | null;
  resolved_at: string;
}

export interface Ignore {
  until_occurrences?: number;
  until?: string;
  until_escalating?: boolean;
}

export interface GroupState {
  status: 'unresolved' | 'resolved' | 'ignored';
  resolution?: Resolution | null;
  ignore?: Ignore | null;
  /** Ignored: occurrences since the ignore, before this one. */
  occurrences_since_ignored?: number;
  /** Ignored until escalating: occurrences per hour before the ignore. */
  rate_before_per_hour?: number;
  /** Ignored until escalating: occurrences in the hour up to this one, before it. */
  occurrences_last_hour?: number;
}

export interface OccurrenceFacts {
  release: string | null;
  /** The event's timestamp, else its detection time. */
  timestamp: string;
}

export interface DecideOptions {
  /** `now`: occurrences this long after the resolution do not regress (default 5). */
  graceSeconds: number;
  /** Ignored until escalating: the last hour's rate must exceed this multiple of the rate before (default 2). */
  escalationMultiple: number;
}

export const defaultDecideOptions: DecideOptions = { graceSeconds: 5, escalationMultiple: 2 };

export type DecidedBy =
  | 'semver'
  | 'date'
  | 'no_release'
  | 'timestamp_before_resolution'
  | 'grace'
  | 'release_unknown'
  | 'commit_pending'
  | 'not_resolved'
  | 'ignore_count'
  | 'ignore_until'
  | 'escalating'
  | 'ignored';

export interface Decision {
  /** Resolved: the group regressed. Ignored: the ignore ended (the group escalates). */
  regressed: boolean;
  decided_by: DecidedBy;
  why: string;
}

const decision = (regressed: boolean, decided_by: DecidedBy, why: string): Decision => ({
  regressed,
  decided_by,
  why,
});

type ParsedVersion = { pkg: string; version: semver.SemVer } | null;

// versions repeat (a project has few releases, each seen many times): parse each once, bounded
const parsedVersions = new Map<string, ParsedVersion>();
const PARSED_VERSIONS_KEPT = 10_000;

/** `package@1.2.3` or `1.2.3` (SemVer 2.0, strict) → package and version; null when not semver. */
export function parseVersion(version: string): ParsedVersion {
  const known = parsedVersions.get(version);
  if (known !== undefined) return known;
  const at = version.lastIndexOf('@');
  const semverPart = semver.parse(at > 0 ? version.slice(at + 1) : version);
  const parsed = semverPart
    ? { pkg: at > 0 ? version.slice(0, at) : '', version: semverPart }
    : null;
  if (parsedVersions.size >= PARSED_VERSIONS_KEPT) parsedVersions.clear();
  parsedVersions.set(version, parsed);
  return parsed;
}

/**
 * -1, 0 or 1 as `a` is older, the same or newer than `b`: by semantic version when both parse and
 * name the same package (prerelease as SemVer 2.0 orders it, build metadata only as a tie-break),
 * else by when each was first added; null when a date is missing.
 */
export function compareReleases(
  a: string,
  b: string,
  releases: Map<string, Release>,
): { order: -1 | 0 | 1; by: 'semver' | 'date' } | null {
  const [pa, pb] = [parseVersion(a), parseVersion(b)];
  if (pa && pb && pa.pkg === pb.pkg)
    return { order: semver.compareBuild(pa.version, pb.version), by: 'semver' };
  if (a === b) return { order: 0, by: 'date' };
  const [da, db] = [releases.get(a), releases.get(b)].map((r) =>
    r ? Date.parse(r.date_added) : NaN,
  );
  if (Number.isNaN(da) || Number.isNaN(db)) return null;
  return { order: da! < db! ? -1 : da! > db! ? 1 : 0, by: 'date' };
}

/** The release a commit shipped in: the oldest (by compareReleases) of those that contain it. */
function releaseWithCommit(commit: string, releases: Map<string, Release>): string | null {
  let oldest: string | null = null;
  for (const r of releases.values())
    if (
      r.commits?.includes(commit) &&
      (oldest === null || (compareReleases(r.version, oldest, releases)?.order ?? 0) < 0)
    )
      oldest = r.version;
  return oldest;
}

// the service decides many occurrences against one list of a project's releases: index it once
const indexes = new WeakMap<Release[], Map<string, Release>>();
function indexOf(releaseList: Release[]): Map<string, Release> {
  let index = indexes.get(releaseList);
  if (!index) {
    index = new Map(releaseList.map((r) => [r.version, r]));
    indexes.set(releaseList, index);
  }
  return index;
}

/** The decision for one occurrence on one group, against the project's releases (not changed after). */
export function decide(
  group: GroupState,
  event: OccurrenceFacts,
  releaseList: Release[],
  options: DecideOptions = defaultDecideOptions,
): Decision {
  if (group.status === 'ignored') return decideIgnored(group, event, options);
  const resolution = group.resolution;
  if (group.status !== 'resolved' || !resolution)
    return decision(false, 'not_resolved', `the group is ${group.status}, not resolved`);
  const at = Date.parse(event.timestamp);
  const resolvedAt = Date.parse(resolution.resolved_at);
  if (at < resolvedAt)
    return decision(
      false,
      'timestamp_before_resolution',
      `the event (${event.timestamp}) happened before the resolution (${resolution.resolved_at}): late ingestion is not evidence`,
    );
  if (resolution.type === 'now') {
    const graceEnds = resolvedAt + options.graceSeconds * 1000;
    return at <= graceEnds
      ? decision(
          false,
          'grace',
          `the event came within the ${options.graceSeconds} s grace period after the resolution`,
        )
      : decision(
          true,
          'grace',
          `the group was resolved now and the event came after the ${options.graceSeconds} s grace period`,
        );
  }
  if (event.release === null)
    return decision(
      false,
      'no_release',
      'the event has no release, and the resolution is release-based',
    );
  const releases = indexOf(releaseList);
  let fixedIn: string | null | undefined;
  let what: string;
  switch (resolution.type) {
    case 'in_release':
      fixedIn = resolution.release;
      what = `resolved in ${fixedIn}`;
      break;
    case 'in_next_release':
      fixedIn = resolution.current_release_version;
      what = `resolved in the release after ${fixedIn}`;
      break;
    case 'in_commit':
      if (!resolution.commit)
        return decision(false, 'commit_pending', 'the resolution names no commit');
      fixedIn = releaseWithCommit(resolution.commit, releases);
      if (fixedIn === null)
        return decision(
          false,
          'commit_pending',
          `no release contains commit ${resolution.commit} yet`,
        );
      what = `resolved in commit ${resolution.commit}, first in ${fixedIn}`;
      break;
  }
  if (!fixedIn)
    return decision(
      false,
      'release_unknown',
      `the ${resolution.type} resolution names no release to compare with`,
    );
  const compared = compareReleases(event.release, fixedIn, releases);
  if (!compared)
    return decision(
      false,
      'release_unknown',
      `${event.release} and ${fixedIn} are not both semantic versions of one package, and ${releases.has(event.release) ? fixedIn : event.release} was never seen`,
    );
  const newer = compared.order > 0;
  const how = compared.by === 'semver' ? 'by semantic version' : 'by first-seen time';
  return decision(
    newer,
    compared.by,
    newer
      ? `${event.release} is newer than ${fixedIn} ${how} (${what})`
      : `${event.release} is not newer than ${fixedIn} ${how} (${what})`,
  );
}

function decideIgnored(
  group: GroupState,
  event: OccurrenceFacts,
  options: DecideOptions,
): Decision {
  const ignore = group.ignore ?? {};
  const count = (group.occurrences_since_ignored ?? 0) + 1;
  if (ignore.until_occurrences !== undefined && count >= ignore.until_occurrences)
    return decision(
      true,
      'ignore_count',
      `occurrence ${count} since the ignore reached its limit of ${ignore.until_occurrences}`,
    );
  if (ignore.until !== undefined && Date.parse(event.timestamp) >= Date.parse(ignore.until))
    return decision(
      true,
      'ignore_until',
      `the event (${event.timestamp}) came after the ignore ended (${ignore.until})`,
    );
  if (ignore.until_escalating) {
    const lastHour = (group.occurrences_last_hour ?? 0) + 1;
    const limit = options.escalationMultiple * (group.rate_before_per_hour ?? 0);
    if (lastHour > limit)
      return decision(
        true,
        'escalating',
        `${lastHour} occurrences in the last hour exceed ${options.escalationMultiple} × the ${group.rate_before_per_hour ?? 0}/h before the ignore`,
      );
  }
  return decision(
    false,
    'ignored',
    'the group is ignored and none of its ignore conditions is met',
  );
}

/**
 * The project's current release at `at` (for `in_next_release` without one): the newest by
 * compareReleases among the live releases added by then; null when there is none.
 */
export function currentReleaseAt(releaseList: Release[], at: string): string | null {
  const when = Date.parse(at);
  const live = releaseList.filter((r) => !r.deleted && Date.parse(r.date_added) <= when);
  const byVersion = new Map(live.map((r) => [r.version, r]));
  let newest: string | null = null;
  for (const r of live)
    if (newest === null || (compareReleases(r.version, newest, byVersion)?.order ?? 0) > 0)
      newest = r.version;
  return newest;
}
