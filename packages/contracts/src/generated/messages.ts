// Generated from schemas/*.schema.json by `npm run contracts:generate`; do not edit by hand.
// A test fails when this file and the schemas drift apart.

/**
 * Something went wrong, here is its fingerprint. Accepts Sentry issue-platform occurrences (ingest-occurrences, payload_type "occurrence") unchanged. Sentry itself requires only id, project_id and fingerprint; Shoal also requires what grouping needs: issue_title, type, detection_time, and event_id or an embedded event. The top level stays open (Sentry may add fields); Shoal's own fields live in the closed `shoal` object, so adding one there is a BACKWARD-compatible change.
 */
export type Occurrence = {
  [k: string]: unknown | undefined;
} & {
  /**
   * Occurrence id: a UUID, with or without dashes. Idempotency key for the whole pipeline.
   */
  id: string;
  /**
   * Project the occurrence belongs to.
   */
  project_id: number;
  /**
   * Id of an event stored upstream; required unless `event` is embedded.
   */
  event_id?: string;
  /**
   * Grouping fingerprints; the first is the primary one (the message key uses it). All map to the same group.
   *
   * @minItems 1
   */
  fingerprint: [string, ...string[]];
  /**
   * Title of the issue this occurrence belongs to.
   */
  issue_title: string;
  /**
   * Second line of the issue.
   */
  subtitle?: string;
  resource_id?: string | null;
  /**
   * Free-form evidence for the issue type.
   */
  evidence_data?: {
    [k: string]: unknown | undefined;
  };
  /**
   * Evidence shown to humans.
   */
  evidence_display?: {
    name: string;
    value: string;
    important: boolean;
    [k: string]: unknown | undefined;
  }[];
  /**
   * Group type id (Sentry's GroupType.type_id).
   */
  type: number;
  /**
   * When the problem was detected, epoch seconds (fractional allowed).
   */
  detection_time: number;
  /**
   * Severity; "info" when absent.
   */
  level?: 'fatal' | 'error' | 'warning' | 'info' | 'debug';
  culprit?: string | null;
  initial_issue_priority?: number | null;
  /**
   * Sentry actor string, e.g. "user:1" or "team:2".
   */
  assignee?: string | null;
  /**
   * Sentry's discriminator; status changes go to shoal.status-changes.v1.
   */
  payload_type?: 'occurrence';
  /**
   * An embedded event, as Sentry's issue platform sends it.
   */
  event?: {
    event_id: string;
    project_id?: number;
    platform?: string | null;
    timestamp?: string | number;
    received?: string | number;
    /**
     * Either an object or a list of [key, value] pairs, as Sentry accepts both.
     */
    tags?:
      | {
          [k: string]: unknown | undefined;
        }
      | unknown[];
    release?: string | null;
    environment?: string | null;
    [k: string]: unknown | undefined;
  };
  /**
   * Shoal's own optional fields. Closed: add new fields here, never at the top level.
   */
  shoal?: {
    trace_id?: string;
    request_id?: string;
    release_sha?: string;
    /**
     * Overrides event.environment.
     */
    environment?: string;
    /**
     * The detector that raised it; must be known to Shoal.
     */
    detector_id?: number;
    /**
     * What dedup normalises into dedup keys.
     */
    dedup_hints?: {
      component?: string;
      route?: string;
      message?: string;
      stack_frames?: string[];
    };
  };
  [k: string]: unknown | undefined;
};

/**
 * Resolve, ignore or unresolve the group of a fingerprint. Accepts Sentry issue-platform status changes (payload_type "status_change") unchanged. Top level open as Sentry's is; Shoal's own fields live in the closed `shoal` object.
 */
export interface StatusChange {
  /**
   * Message id. When absent, a change carrying update_date gets one from its content (the same change sent again has the same id); otherwise the producer issues one (the gateway from the request's Idempotency-Key, when given).
   */
  id?: string;
  /**
   * @minItems 1
   */
  fingerprint: [string, ...string[]];
  project_id: number;
  /**
   * 0 unresolved, 1 resolved, 2 ignored (Sentry's GroupStatus).
   */
  new_status: 0 | 1 | 2;
  /**
   * Sentry's GroupSubStatus, or null.
   */
  new_substatus?: number | null;
  detector_id?: number | null;
  activity_data?: {
    [k: string]: unknown | undefined;
  } | null;
  /**
   * When the status changed (ISO 8601).
   */
  update_date?: string | null;
  payload_type?: 'status_change';
  /**
   * Shoal's own optional fields. Closed: add new fields here, never at the top level.
   */
  shoal?: {
    trace_id?: string;
    request_id?: string;
    /**
     * Deprecated spelling of resolution {type: in_release, release}: grouping reads it as that when `resolution` is absent.
     */
    resolved_in_release?: string;
    /**
     * Deprecated spelling of resolution {type: in_next_release} (true): grouping reads it as that when `resolution` is absent.
     */
    resolved_in_next_release?: boolean;
    /**
     * Shoal's own changes (lifecycle, regression) name the group; grouping applies the change to it (the fingerprint then only keys the message).
     */
    group_id?: number;
    /**
     * Apply only when the group is in this state (status, and with resolution_id the resolution it is resolved by); otherwise grouping records a no-op (group event status_change_noop), never a flip-flop.
     */
    expect?: {
      /**
       * 0 unresolved, 1 resolved, 2 ignored.
       */
      status: 0 | 1 | 2;
      resolution_id?: number | null;
    };
    /**
     * How a resolve (new_status 1) is resolved; grouping numbers it (resolution_id) and stamps resolved_at. Absent: `now` (or the deprecated resolved_in_* fields).
     */
    resolution?: {
      type: 'in_release' | 'in_next_release' | 'in_commit' | 'now';
      /**
       * in_release: the release the fix is in (it and older do not regress).
       */
      release?: string | null;
      /**
       * in_next_release: the project's current release at resolution time, when the sender knows it (regression fills it in otherwise).
       */
      current_release_version?: string | null;
      /**
       * in_commit: the commit SHA of the fix.
       */
      commit?: string | null;
    };
    /**
     * How an ignore (new_status 2) ends: after this many more occurrences, at this time, or when the group escalates. Carried on status_changed for regression.
     */
    ignore?: {
      until_occurrences?: number;
      until?: string;
      until_escalating?: boolean;
    };
    /**
     * Who decided the change; absent: upstream.
     */
    decided_by?: 'upstream' | 'lifecycle' | 'regression';
    /**
     * Regression's flapping guard: the group regressed more often than its limit in the window. Kept on the group and carried on its status_changed events until a change says otherwise.
     */
    flapping?: boolean;
  };
  [k: string]: unknown | undefined;
}

/**
 * What grouping did, at the grain downstream needs: a group was created (group_created), its status changed (status_changed), a conditional status change did not hold and was not applied (status_change_noop), an occurrence landed on a group that is not unresolved (occurrence_grouped), a release was first seen in a project (release_seen), and per group what changed since the last report (group_activity, from a scheduled flush). Written through grouping's outbox; keyed by group id. Closed content model: new optional fields and enum values are BACKWARD-compatible.
 */
export interface GroupEvent {
  /**
   * Stable id (same input, same id); consumers are idempotent on it.
   */
  event_id: string;
  event_type:
    | 'group_created'
    | 'occurrence_grouped'
    | 'status_changed'
    | 'release_seen'
    | 'group_activity'
    | 'status_change_noop';
  occurred_at: string;
  /**
   * release_seen: the group of the occurrence that first saw the release.
   */
  group_id: number;
  project_id: number;
  short_id?: string;
  primary_hash?: string;
  group_type?: number;
  occurrence_id?: string;
  detection_time?: number;
  level?: 'fatal' | 'error' | 'warning' | 'info' | 'debug';
  title?: string;
  subtitle?: string;
  culprit?: string | null;
  /**
   * group_created: the first occurrence's; occurrence_grouped: its own; release_seen: the release; group_activity: the latest occurrence's.
   */
  release?: string | null;
  environment?: string | null;
  /**
   * occurrence_grouped: the embedded event's timestamp, when it has one.
   */
  event_timestamp?: string;
  times_seen?: number;
  /**
   * group_activity: occurrences since the group's previous group_activity (the deltas of a group sum to its times_seen).
   */
  times_seen_delta?: number;
  first_seen?: string;
  last_seen?: string;
  /**
   * group_activity: environments the group was first seen in since its previous group_activity.
   */
  new_environments?: string[];
  status?: 'unresolved' | 'resolved' | 'ignored';
  previous_status?: 'unresolved' | 'resolved' | 'ignored';
  substatus?: number | null;
  trace_id?: string;
  /**
   * group_created: Shoal's dedup hints when the occurrence gives them, else derived from Sentry's fields (message: issue title; component: culprit; route: the event's transaction; stack_frames: its top in-app frames).
   */
  dedup_hints?: {
    component?: string;
    route?: string;
    message?: string;
    stack_frames?: string[];
  };
  /**
   * group_created: the first occurrence's fingerprint[0] (the status-changes key is project_id:primary_fingerprint).
   */
  primary_fingerprint?: string;
  /**
   * status_changed, status_change_noop: the id of the status-change message that was applied or not.
   */
  change_id?: string;
  /**
   * status_changed, status_change_noop: the group's status sequence number (one per applied change; a no-op carries the current one). Consumers ignore a status_changed not newer than the last they applied.
   */
  sequence?: number;
  /**
   * status_changed, status_change_noop: the group's latest resolution (monotone per group; 0 before its first); status_change_noop: the one the group holds.
   */
  resolution_id?: number;
  /**
   * status_changed to resolved: how it is resolved.
   */
  resolution?: {
    type: 'in_release' | 'in_next_release' | 'in_commit' | 'now';
    release?: string | null;
    current_release_version?: string | null;
    commit?: string | null;
    resolved_at: string;
  };
  /**
   * status_changed to ignored: how the ignore ends, as the change gave it.
   */
  ignore?: {
    until_occurrences?: number;
    until?: string;
    until_escalating?: boolean;
  };
  decided_by?: 'upstream' | 'lifecycle' | 'regression';
  /**
   * status_changed: the group is flagged flapping (regression's guard).
   */
  flapping?: boolean;
  /**
   * status_change_noop: the state the change expected.
   */
  expect?: {
    status: 'unresolved' | 'resolved' | 'ignored';
    resolution_id?: number | null;
  };
}

/**
 * A request to change an issue (issue id = group id), keyed by issue id (cleanup_orphans: `orphans:<issue id>`, so a parked issue key does not hold it): from the agent API and the CLI (origin agent) or from lifecycle's own intake and sweeper and an operator's `shoal orphans cleanup` (origin system). The lifecycle service's decide consumer applies them in partition order, timed by issued_at, and records each outcome. Closed content model.
 */
export interface LifecycleCommand {
  /**
   * Idempotency key of the command (system commands: UUIDv5 of the source event id; the API: the Idempotency-Key). The lifecycle events it causes derive their ids from it.
   */
  command_id: string;
  /**
   * Agent commands: claim, renew, release, transition, resolve, reopen, mark_duplicate, add_note, attach_event, update. System commands (origin system only): open (group_created), observe (group_activity: read model only), sync_status (grouping's status_changed), delete (group deleted or discarded: tombstone), hide / unhide (project deleted / restored), set_duplicate (incidents: link, clear, re-point), expire_claim (the sweeper), cleanup_orphans (an operator's `shoal orphans cleanup --service lifecycle`: the issue's records still orphaned, keyed `orphans:<issue id>`).
   */
  command:
    | 'claim'
    | 'release'
    | 'transition'
    | 'resolve'
    | 'add_note'
    | 'attach_event'
    | 'update'
    | 'renew'
    | 'reopen'
    | 'mark_duplicate'
    | 'open'
    | 'observe'
    | 'sync_status'
    | 'delete'
    | 'hide'
    | 'unhide'
    | 'set_duplicate'
    | 'expire_claim'
    | 'cleanup_orphans';
  issue_id: number;
  /**
   * Who asks: the agent or user name the API token carries; system commands name their source (e.g. `lifecycle-intake`, `lifecycle-sweeper`).
   */
  actor: string;
  /**
   * Set by the server that produced the command (API, CLI, intake, sweeper), never by the client: the decide consumer's clock for this command (leases, SLA, history times; it never goes back per issue).
   */
  issued_at: string;
  /**
   * Optimistic concurrency: applies only at this issue version.
   */
  expected_version?: number;
  /**
   * The SHA-256 (64 lowercase hex digits) of the claim token the API made; the raw token is never sent or stored. claim: the new lease's; renew, release, transition, resolve, mark_duplicate by the holder: the lease's.
   */
  claim_token?: string;
  /**
   * claim, renew: lease length (the API bounds it: 300 by default, at most 3,600); renew extends from its decision time.
   */
  lease_seconds?: number;
  to_status?:
    | 'new'
    | 'triaged'
    | 'in_progress'
    | 'awaiting_verification'
    | 'resolved'
    | 'closed'
    | 'regressed';
  /**
   * add_note, and a comment on any move.
   */
  note?: string;
  /**
   * resolve (deprecated spelling of resolution.commit_shas).
   */
  commit_shas?: string[];
  /**
   * resolve (deprecated spelling of resolution.release for in_release).
   */
  release?: string;
  /**
   * attach_event (deprecated: send run_event): an open event object.
   */
  event?: {
    [k: string]: unknown | undefined;
  };
  severity?: 'critical' | 'high' | 'medium' | 'low';
  category?: string;
  assignee?: string | null;
  sla_due_at?: string | null;
  trace_id?: string;
  request_id?: string;
  /**
   * Who made the command: `agent` (the agent API, the CLI; absent means agent) or `system` (lifecycle's intake and sweeper). System commands are refused from agents.
   */
  origin?: 'agent' | 'system';
  /**
   * The actor holds the admin scope (set by the API): may move a claimed issue without the claim, force a release, reopen a closed issue.
   */
  admin?: boolean;
  /**
   * When it happened at its source, when that differs from issued_at (imported history, the group event a system command comes from). Recorded, never used as the clock.
   */
  occurred_at?: string;
  /**
   * open: the group's project; hide / unhide: the project deleted or restored.
   */
  project_id?: number;
  /**
   * resolve (and transition to awaiting_verification or resolved): how it is resolved; sync_status: the resolution grouping applied. Absent on resolve: in_next_release.
   */
  resolution?: {
    type: 'in_release' | 'in_next_release' | 'in_commit' | 'now';
    /**
     * in_release: the release the fix is in.
     */
    release?: string | null;
    /**
     * in_next_release: the release that was current at resolution (the fix ships after it).
     */
    current_release?: string | null;
    /**
     * in_commit: the fix's commits (the first is grouping's `commit`).
     */
    commit_shas?: string[];
    /**
     * in_commit: the repository of the commits.
     */
    repository?: string | null;
    notes?: string | null;
    /**
     * sync_status: grouping's number of this resolution (monotone per group).
     */
    resolution_id?: number;
    /**
     * sync_status: when grouping resolved it.
     */
    resolved_at?: string;
  };
  /**
   * transition to closed: why (fixed, ignored, duplicate, wont_fix; absent: fixed). mark_duplicate closes with duplicate.
   */
  close_reason?: 'fixed' | 'ignored' | 'duplicate' | 'wont_fix';
  /**
   * mark_duplicate: the canonical issue (the API checks it exists); set_duplicate: the canonical issue of the incident the group is in (null: cleared).
   */
  duplicate_of?: number | null;
  /**
   * set_duplicate: the incident (null: the group left its incident).
   */
  incident_id?: number | null;
  /**
   * The commit SHA of the release the issue is seen in (update, resolve).
   */
  release_sha?: string;
  /**
   * attach_event: what an agent run did (closed; the older open `event` stays accepted).
   */
  run_event?: {
    run_id: string;
    phase: 'started' | 'progress' | 'succeeded' | 'failed' | 'cancelled';
    summary?: string;
    url?: string;
    /**
     * When the run reported it (its own clock; recorded only).
     */
    at?: string;
  };
  /**
   * expire_claim: the claim generation (per issue, +1 per claim) the sweeper saw expire; a newer claim is not expired by it.
   */
  claim_generation?: number;
  /**
   * open, observe: the group's telemetry from group_created / group_activity.
   */
  group?: {
    short_id?: string;
    title?: string;
    culprit?: string | null;
    level?: 'fatal' | 'error' | 'warning' | 'info' | 'debug';
    /**
     * open: the status-changes key is project_id:primary_fingerprint.
     */
    primary_fingerprint?: string;
    release?: string | null;
    environment?: string | null;
    first_seen?: string;
    last_seen?: string;
    times_seen?: number;
    times_seen_delta?: number;
    trace_id?: string;
  };
  /**
   * sync_status: grouping's status_changed for the issue's group.
   */
  group_status?: {
    status: 'unresolved' | 'resolved' | 'ignored';
    previous_status?: 'unresolved' | 'resolved' | 'ignored';
    substatus?: number | null;
    /**
     * The group's status sequence; one not newer than the last applied is ignored.
     */
    sequence: number;
    resolution_id?: number;
    decided_by?: 'upstream' | 'lifecycle' | 'regression';
    change_id?: string;
    /**
     * Grouping did not apply lifecycle's conditional change change_id (a status_change_noop): status, sequence and resolution_id are what the group holds. Decide moves the issue to agree with it when change_id is the last change lifecycle asked for.
     */
    noop?: boolean;
  };
  /**
   * cleanup_orphans: the issue's records the operator saw orphaned (lifecycle's `orphans` view): the issue itself (`issue`, id the issue id: tombstoned as a deletion is) or a key parked behind a head dead-lettered for the deleted issue or group (`parked_key`, id the JSON array [consumer group, topic, key]: expired now, so the runtime dead-letters its parked messages in order). Each still an orphan when applied is cleaned with an audit row; the rest are kept and named (`not_orphaned`).
   *
   * @minItems 1
   */
  orphans?: [
    {
      kind: 'issue' | 'parked_key';
      id: string;
    },
    ...{
      kind: 'issue' | 'parked_key';
      id: string;
    }[]
  ];
  /**
   * cleanup_orphans: why, as the operator gave it (kept in orphan_cleanups).
   */
  reason?: string;
}

/**
 * What happened to an issue, for agents; written through the lifecycle service's outbox, keyed by issue id, one event per applied command that changes the issue (versions 1, 2, 3… per issue; `observe` changes only the read model). event_id derives from command_id, so a rebuild re-creates the same events. Closed content model.
 */
export interface LifecycleEvent {
  /**
   * Derived from command_id (UUIDv5 of the decide consumer group, the command id and the event's ordinal): the same command gives the same event, in a rebuild too.
   */
  event_id: string;
  /**
   * created (open), transitioned, claimed, claim_renewed, released, claim_expired, note_added, event_attached, updated, resolved, reopened, closed (duplicates too: close_reason duplicate), regressed (grouping's status_changed decided by regression), deleted (the group was deleted: a tombstone, no later event), hidden / unhidden (the project was deleted / restored), duplicate_changed (an incident links the issue to its canonical issue, clears or re-points it: an annotation, not a close).
   */
  event_type:
    | 'created'
    | 'transitioned'
    | 'claimed'
    | 'released'
    | 'claim_expired'
    | 'note_added'
    | 'event_attached'
    | 'updated'
    | 'resolved'
    | 'reopened'
    | 'closed'
    | 'claim_renewed'
    | 'regressed'
    | 'deleted'
    | 'hidden'
    | 'unhidden'
    | 'duplicate_changed';
  issue_id: number;
  project_id?: number;
  /**
   * The issue's version after this event: +1 per event, 1 for created.
   */
  version: number;
  status:
    | 'new'
    | 'triaged'
    | 'in_progress'
    | 'awaiting_verification'
    | 'resolved'
    | 'closed'
    | 'regressed';
  previous_status?:
    | 'new'
    | 'triaged'
    | 'in_progress'
    | 'awaiting_verification'
    | 'resolved'
    | 'closed'
    | 'regressed';
  occurred_at: string;
  actor?: string;
  command_id?: string;
  claimed_by?: string | null;
  claim_expires_at?: string | null;
  note?: string;
  commit_shas?: string[];
  release?: string;
  severity?: 'critical' | 'high' | 'medium' | 'low';
  category?: string;
  assignee?: string | null;
  sla_due_at?: string | null;
  title?: string;
  short_id?: string;
  trace_id?: string;
  request_id?: string;
  /**
   * The issue's group (issue id = group id).
   */
  group_id?: number;
  /**
   * Who made the command: `agent` (the agent API, the CLI; absent means agent) or `system` (lifecycle's intake and sweeper). System commands are refused from agents.
   */
  origin?: 'agent' | 'system';
  /**
   * The issue's resolution (resolved, awaiting_verification, closed fixed), as the command or grouping gave it.
   */
  resolution?: {
    type: 'in_release' | 'in_next_release' | 'in_commit' | 'now';
    /**
     * in_release: the release the fix is in.
     */
    release?: string | null;
    /**
     * in_next_release: the release that was current at resolution (the fix ships after it).
     */
    current_release?: string | null;
    /**
     * in_commit: the fix's commits (the first is grouping's `commit`).
     */
    commit_shas?: string[];
    /**
     * in_commit: the repository of the commits.
     */
    repository?: string | null;
    notes?: string | null;
    /**
     * sync_status: grouping's number of this resolution (monotone per group).
     */
    resolution_id?: number;
    /**
     * sync_status: when grouping resolved it.
     */
    resolved_at?: string;
  };
  close_reason?: 'fixed' | 'ignored' | 'duplicate' | 'wont_fix' | null;
  /**
   * The canonical issue this one duplicates (mark_duplicate, or the incident's canonical issue); null: none.
   */
  duplicate_of?: number | null;
  /**
   * The incident the issue's group is in (null: none).
   */
  canonical_incident_id?: number | null;
  release_sha?: string | null;
  /**
   * attach_event: what an agent run did (closed; the older open `event` stays accepted).
   */
  run_event?: {
    run_id: string;
    phase: 'started' | 'progress' | 'succeeded' | 'failed' | 'cancelled';
    summary?: string;
    url?: string;
    /**
     * When the run reported it (its own clock; recorded only).
     */
    at?: string;
  };
  /**
   * The whole issue after the change (the read model's row; telemetry from observe shows here at the next event).
   */
  issue?: {
    issue_id: number;
    group_id?: number;
    project_id: number;
    status:
      | 'new'
      | 'triaged'
      | 'in_progress'
      | 'awaiting_verification'
      | 'resolved'
      | 'closed'
      | 'regressed';
    version: number;
    severity?: 'critical' | 'high' | 'medium' | 'low';
    category?: string | null;
    assignee?: string | null;
    claimed_by?: string | null;
    claim_expires_at?: string | null;
    sla_due_at?: string | null;
    title?: string | null;
    short_id?: string | null;
    culprit?: string | null;
    level?: string | null;
    trace_id?: string | null;
    request_id?: string | null;
    release_sha?: string | null;
    resolution?: {
      type: 'in_release' | 'in_next_release' | 'in_commit' | 'now';
      /**
       * in_release: the release the fix is in.
       */
      release?: string | null;
      /**
       * in_next_release: the release that was current at resolution (the fix ships after it).
       */
      current_release?: string | null;
      /**
       * in_commit: the fix's commits (the first is grouping's `commit`).
       */
      commit_shas?: string[];
      /**
       * in_commit: the repository of the commits.
       */
      repository?: string | null;
      notes?: string | null;
      /**
       * sync_status: grouping's number of this resolution (monotone per group).
       */
      resolution_id?: number;
      /**
       * sync_status: when grouping resolved it.
       */
      resolved_at?: string;
    } | null;
    close_reason?: 'fixed' | 'ignored' | 'duplicate' | 'wont_fix' | null;
    duplicate_of?: number | null;
    canonical_incident_id?: number | null;
    times_seen?: number;
    first_seen?: string | null;
    last_seen?: string | null;
    opened_at?: string;
    /**
     * When the issue entered its status.
     */
    status_since?: string;
    updated_at?: string;
    /**
     * Its project is deleted (until restored).
     */
    hidden?: boolean;
    deleted_at?: string | null;
  };
}

/**
 * A detector, group, project, environment or release was created, deleted, discarded or restored; keyed by entity id. Services that cache or reference these entities consume it (deletions cascade). Closed content model.
 */
export interface EntityChange {
  event_id: string;
  entity_kind: 'detector' | 'group' | 'project' | 'environment' | 'release';
  /**
   * The entity's id as text: a number for detectors, groups and projects, the name for environments, the version for releases.
   */
  entity_id: string;
  /**
   * Owning project (environments, detectors, groups, releases).
   */
  project_id?: number;
  /**
   * `discarded` is Sentry's delete-and-discard of a group: the group and its fingerprints are tombstoned, later occurrences of them dropped; `restored` lifts the fingerprints' tombstones.
   */
  change: 'created' | 'deleted' | 'restored' | 'discarded';
  occurred_at: string;
  name?: string;
  actor?: string;
  /**
   * Releases: when the release was made (orders releases that are not semver).
   */
  released_at?: string;
  /**
   * Releases: the commits the release contains (SHAs).
   */
  commits?: string[];
}

/**
 * What dedup did to an incident (groups that are one real incident): a group joined it (incident_linked, by its dedup key, as the first of a new incident, or split out into an incident of its own), a group left it (incident_unlinked: split out by an operator, deleted, or its project deleted), or another incident was merged into it (incident_merged). Every event names the incident's canonical group after the change (its oldest live member; null when none is left). Written through dedup's outbox; keyed by incident id. Closed content model: new optional fields and enum values are BACKWARD-compatible.
 */
export interface IncidentEvent {
  /**
   * Stable id (same input, same id); consumers are idempotent on it.
   */
  event_id: string;
  event_type: 'incident_linked' | 'incident_unlinked' | 'incident_merged';
  occurred_at: string;
  incident_id: number;
  project_id: number;
  /**
   * incident_linked / incident_unlinked: the group that joined or left.
   */
  group_id?: number;
  /**
   * The incident's canonical group after this change: its oldest live member (null: none left).
   */
  canonical_group_id: number | null;
  /**
   * incident_linked by key: the key the group shares with the incident.
   */
  dedup_key?: string;
  /**
   * new_incident: the first group of its key in the window; dedup_key: joined by its key; split: an operator split the group out (unlinked from the old incident, linked to its own); group_deleted: the group was deleted; project_deleted: its project was deleted (the incident is left with no members); merge: an operator merged incidents.
   */
  reason: 'new_incident' | 'dedup_key' | 'split' | 'group_deleted' | 'merge' | 'project_deleted';
  /**
   * incident_merged: the incident merged into this one (it has no members left).
   */
  merged_incident_id?: number;
  /**
   * incident_merged: every live member after the merge.
   */
  member_group_ids?: number[];
  /**
   * split and merge: the operator who asked.
   */
  actor?: string;
  /**
   * split and merge: why, as the operator said.
   */
  note?: string;
}

/**
 * An operator's change to dedup's incidents, from `shoal dedup merge|split` and `shoal orphans cleanup --service dedup`; keyed by incident id (cleanup_orphans: `project:<project_id>`). merge: the incident from_incident_id joins incident_id (its members and keys move; incident_id stays). split: group_id leaves incident_id for an incident of its own, for good (its key does not link it again). merge and split name incident_id. cleanup_orphans: of the members named in group_ids (groups of project_id), dedup removes each that is still a tombstone of a deleted project when it applies the command (the project's tombstone keeps later messages naming them stale), with an audit row each; one no longer an orphan is kept and the command recorded as refused. Dedup decides whether it is allowed and is the only writer of its tables. Closed content model.
 */
export interface DedupCommand {
  /**
   * Idempotency key of the command.
   */
  command_id: string;
  command: 'merge' | 'split' | 'cleanup_orphans';
  /**
   * merge: the incident that stays; split: the incident the group leaves (both require it).
   */
  incident_id?: number;
  /**
   * merge: the incident merged into incident_id.
   */
  from_incident_id?: number;
  /**
   * split: the group split out.
   */
  group_id?: number;
  /**
   * cleanup_orphans: the deleted project whose members are named.
   */
  project_id?: number;
  /**
   * cleanup_orphans: the members, by group id.
   *
   * @minItems 1
   */
  group_ids?: [number, ...number[]];
  /**
   * Who asks (default user@host).
   */
  actor: string;
  /**
   * Why, in the operator's words.
   */
  reason?: string;
  issued_at: string;
}

/**
 * An operator's change to regression's records, from `shoal orphans cleanup`; keyed by group id. cleanup_orphans: remove the group's records named in change_ids that are still orphans when regression applies it (the group deleted, or a proposal unanswered for deadline_seconds before issued_at), each with an audit row; one no longer an orphan is kept and the command recorded as refused. Regression is the only writer of its tables. Closed content model.
 */
export interface RegressionCommand {
  /**
   * Idempotency key of the command.
   */
  command_id: string;
  command: 'cleanup_orphans';
  /**
   * The group whose records are named (the key).
   */
  group_id: number;
  /**
   * The records, by their stable change id (the status change each proposed).
   *
   * @minItems 1
   */
  change_ids: [string, ...string[]];
  /**
   * A proposal unanswered this long before issued_at is an orphan.
   */
  deadline_seconds: number;
  /**
   * Who asks (default user@host).
   */
  actor: string;
  /**
   * Why, in the operator's words.
   */
  reason?: string;
  issued_at: string;
}

/**
 * An operator's change to grouping's records, from `shoal orphans cleanup --service grouping`; keyed by orphan_kind. cleanup_orphans: of the records named in ids, grouping cleans each that is still an orphan when it applies the command, with an audit row each: group (a live group of a deleted project) is deleted as a group deletion is; held_occurrence (held for noise or the rate limit, of a deleted project) is removed, kept whole in the audit row; held_message (held for an entity that was deleted, or whose project was) has its deadline brought to now, so the runtime dead-letters it; parked_key (parked behind a head dead-lettered for an entity still deleted) is expired now, so the runtime dead-letters its parked messages in order. One no longer an orphan is kept and the command recorded as refused. Grouping is the only writer of its tables. Closed content model.
 */
export interface GroupingCommand {
  /**
   * Idempotency key of the command.
   */
  command_id: string;
  command: 'cleanup_orphans';
  /**
   * What ids name (the key).
   */
  orphan_kind: 'group' | 'held_occurrence' | 'held_message' | 'parked_key';
  /**
   * The records, as `shoal orphans report --service grouping` names them: group id; held_occurrence `project:hash:message id`; held_message its seq; parked_key `consumer group`, topic and key as a JSON array.
   *
   * @minItems 1
   */
  ids: [string, ...string[]];
  /**
   * Who asks (default user@host).
   */
  actor: string;
  /**
   * Why, in the operator's words.
   */
  reason?: string;
  issued_at: string;
}
