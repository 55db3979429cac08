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
 * A request to change an issue, from the agent API or the CLI; keyed by issue id. The lifecycle service decides whether it is allowed. Closed content model.
 */
export interface LifecycleCommand {
  /**
   * Idempotency key of the command.
   */
  command_id: string;
  command: 'claim' | 'release' | 'transition' | 'resolve' | 'add_note' | 'attach_event' | 'update';
  issue_id: number;
  /**
   * Who asks: an agent or user name.
   */
  actor: string;
  issued_at: string;
  /**
   * Optimistic concurrency: applies only at this issue version.
   */
  expected_version?: number;
  claim_token?: string;
  lease_seconds?: number;
  to_status?:
    | 'new'
    | 'triaged'
    | 'in_progress'
    | 'awaiting_verification'
    | 'resolved'
    | 'closed'
    | 'regressed';
  note?: string;
  commit_shas?: string[];
  release?: string;
  /**
   * An event attached to the issue (attach_event).
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
}

/**
 * What happened to an issue, for agents; written through the lifecycle service's outbox, keyed by issue id. Closed content model.
 */
export interface LifecycleEvent {
  event_id: string;
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
    | 'closed';
  issue_id: number;
  project_id?: number;
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
