import { ConfigError, env, loadConfig, z, type Env } from '@shoal/config';
import { reasonCodes, topicCatalog, type ReasonCode, type TopicKey } from '@shoal/contracts';
import type { EntityKind } from './errors.js';

export type Action = 'dlq' | 'skip';
/** What happens to a rejected message besides its `message_rejections` row: nothing more, or a copy in the DLQ. */
export type RejectionAction = 'record' | 'dlq';

/**
 * What happens to a permanently failed message: per reason code, and per entity for stale
 * references; and to a rejected one, per the service's own rejection reasons.
 */
export interface Policy {
  byReason: Partial<Record<ReasonCode, Action>>;
  staleReferenceByEntity: Partial<Record<EntityKind, Action>>;
  rejectedByReason: Record<string, RejectionAction>;
}

/** What an id never heard of means: `create` (made on first sight; applied) or `announce` (held until announced). */
export type UnknownMode = 'create' | 'announce';

/** Deleted is not the same as not yet known (DESIGN.md semantics 7): per entity kind. */
export interface ReferenceRules {
  /** `SHOAL_REFERENCE_<KIND>`; a kind not named keeps its lookup's own mode. */
  modeByEntity: Partial<Record<EntityKind, UnknownMode>>;
  /** How long a message waits for an unknown entity before it is dead-lettered `unknown_reference`. */
  holdDeadlineMs: number;
  holdDeadlineMsByEntity: Partial<Record<EntityKind, number>>;
}

export interface DlqLimits {
  /** Stop when more than this fraction of the window's messages failed (0–1); undefined: no ratio limit. */
  maxInvalidRatio?: number;
  windowMs: number;
  /** The ratio is judged only once the window holds this many messages, so a few bad ones at start are drained. */
  minWindowMessages: number;
  /** Stop after this many failed messages in a row; undefined: no such limit. */
  maxConsecutive?: number;
}

/** Topics whose keys keep their order through failures unless SHOAL_ORDERED_TOPICS says otherwise. */
export const DEFAULT_ORDERED_TOPICS = [
  'lifecycle-commands',
  'status-changes',
  'entity-changes',
  'dedup-commands',
  'group-events',
];

export interface ParkingConfig {
  /** Short topic names (`status-changes`, the catalog name without `shoal.` and the version). */
  orderedTopics: string[];
  /** More parked messages than this (per consumer group) stops the consumer. */
  maxParkedMessages: number;
  /** A key parked behind the same head longer than this has its parked messages dead-lettered. */
  parkedDeadlineMs: number;
}

const parkingEnv = {
  SHOAL_ORDERED_TOPICS: z
    .string()
    .transform((s) => (s.trim() === 'none' ? [] : s.split(',').map((t) => t.trim())))
    .default(DEFAULT_ORDERED_TOPICS),
  SHOAL_MAX_PARKED_MESSAGES: env.positiveInt().default(100_000),
  // the dead-letter topics' retention: past it the head's dead letter is gone, nothing can replay it
  SHOAL_PARKED_DEADLINE_SECONDS: env.positiveInt().default(14 * 24 * 3600),
};

/** `shoal.status-changes.v1` → `status-changes`: how SHOAL_ORDERED_TOPICS names a topic. */
export const shortTopicName = (key: TopicKey) =>
  topicCatalog[key].topic.replace(/^shoal\./, '').replace(/\.v\d+$/, '');

export function decideAction(policy: Policy, reason: ReasonCode, entity?: EntityKind): Action {
  if (reason === 'stale_reference' && entity && policy.staleReferenceByEntity[entity]) {
    return policy.staleReferenceByEntity[entity]!;
  }
  return policy.byReason[reason] ?? 'dlq';
}

export const decideRejection = (policy: Policy, reason: string): RejectionAction =>
  policy.rejectedByReason[reason] ?? 'record';

/**
 * Every variable `<prefix><NAME>` set, by `name` in lower case: for what the service names (its
 * rejection reasons, its entity kinds), so the runtime lists none of them.
 */
function suffixedFromEnv<V>(prefix: string, value: () => z.ZodType<V>, source: Env) {
  const names = Object.keys(source).filter((n) => n.startsWith(prefix) && n.length > prefix.length);
  const c = loadConfig(
    Object.fromEntries(names.map((n) => [n, value().optional()])),
    source,
  ) as Record<string, V | undefined>;
  return Object.fromEntries(
    names.flatMap((n) =>
      c[n] !== undefined ? [[n.slice(prefix.length).toLowerCase(), c[n]]] : [],
    ),
  ) as Record<string, V>;
}

/**
 * Refuses a per-kind variable (`SHOAL_REFERENCE_<KIND>`, `SHOAL_HOLD_DEADLINE_SECONDS_<KIND>`,
 * `SHOAL_POLICY_STALE_REFERENCE_<KIND>`) naming a kind the service does not look up: a typo would
 * otherwise change nothing, silently.
 */
export function assertKnownEntityKinds(config: FailurePolicyConfig, kinds: string[]): void {
  const named: [string, string[]][] = [
    ['SHOAL_REFERENCE_', Object.keys(config.references.modeByEntity)],
    ['SHOAL_HOLD_DEADLINE_SECONDS_', Object.keys(config.references.holdDeadlineMsByEntity)],
    ['SHOAL_POLICY_STALE_REFERENCE_', Object.keys(config.policy.staleReferenceByEntity)],
  ];
  const expected = kinds.length
    ? `an entity kind this service looks up (${kinds.join(', ')})`
    : 'nothing: this service looks up no entity kind';
  const problems = named.flatMap(([prefix, named]) =>
    named
      .filter((kind) => !kinds.includes(kind))
      .map((kind) => ({ variable: `${prefix}${kind.toUpperCase()}`, expected, got: kind })),
  );
  if (problems.length) throw new ConfigError(problems);
}

/**
 * `SHOAL_REFERENCE_<KIND>=create|announce`, `SHOAL_HOLD_DEADLINE_SECONDS` (default 600) and
 * `SHOAL_HOLD_DEADLINE_SECONDS_<KIND>`.
 */
export function referenceRulesFromEnv(source: Env = process.env): ReferenceRules {
  const c = loadConfig({ SHOAL_HOLD_DEADLINE_SECONDS: env.positiveInt().default(600) }, source);
  const byEntity = suffixedFromEnv('SHOAL_HOLD_DEADLINE_SECONDS_', () => env.positiveInt(), source);
  return {
    modeByEntity: suffixedFromEnv(
      'SHOAL_REFERENCE_',
      () => env.oneOf(['create', 'announce'] as const),
      source,
    ),
    holdDeadlineMs: c.SHOAL_HOLD_DEADLINE_SECONDS * 1000,
    holdDeadlineMsByEntity: Object.fromEntries(
      Object.entries(byEntity).map(([kind, seconds]) => [kind, seconds * 1000]),
    ),
  };
}

const action = () => env.oneOf(['dlq', 'skip']).optional();
const ratio = () =>
  z.coerce
    .number({ error: 'expected a number from 0 to 1' })
    .min(0, { error: 'expected a number from 0 to 1' })
    .max(1, { error: 'expected a number from 0 to 1' });

const policyEnv = {
  ...Object.fromEntries(reasonCodes.map((r) => [`SHOAL_POLICY_${r.toUpperCase()}`, action()])),
  SHOAL_DLQ_MAX_INVALID_RATIO: ratio().optional(),
  SHOAL_DLQ_RATIO_WINDOW_SECONDS: env.positiveInt().default(60),
  SHOAL_DLQ_RATIO_MIN_MESSAGES: env.positiveInt().default(100),
  SHOAL_DLQ_MAX_CONSECUTIVE: env.positiveInt().optional(),
  // dead-lettered and replayed ids are kept as long as the dead letters whatever this says (retention.ts)
  SHOAL_LEDGER_RESEND_WINDOW_HOURS: env.positiveInt().default(24),
  ...parkingEnv,
} as Record<string, z.ZodType>;

export interface FailurePolicyConfig {
  policy: Policy;
  limits: DlqLimits;
  /** How long an applied message id stays in the ledger, so a redelivery or re-send is a duplicate. */
  ledgerResendWindowMs: number;
  parking: ParkingConfig;
  references: ReferenceRules;
}

/**
 * From the service's environment: `SHOAL_POLICY_<REASON>=dlq|skip` (e.g. SHOAL_POLICY_STALE_REFERENCE=skip),
 * `SHOAL_POLICY_STALE_REFERENCE_<ENTITY>=…` for one entity kind, `SHOAL_POLICY_REJECTED_<REASON>=record|dlq`
 * for a rejection reason, the dead-letter limits, and which topics keep their keys' order
 * (`SHOAL_ORDERED_TOPICS`, short names, comma-separated, `none` for none) up to how many parked
 * messages (`SHOAL_MAX_PARKED_MESSAGES`).
 */
export function failurePolicyFromEnv(source: Env = process.env): FailurePolicyConfig {
  const c = loadConfig(policyEnv, source) as Record<string, unknown>;
  return {
    policy: {
      byReason: Object.fromEntries(
        reasonCodes.flatMap((r) =>
          c[`SHOAL_POLICY_${r.toUpperCase()}`] ? [[r, c[`SHOAL_POLICY_${r.toUpperCase()}`]]] : [],
        ),
      ),
      staleReferenceByEntity: suffixedFromEnv(
        'SHOAL_POLICY_STALE_REFERENCE_',
        () => env.oneOf(['dlq', 'skip'] as const),
        source,
      ),
      rejectedByReason: suffixedFromEnv(
        'SHOAL_POLICY_REJECTED_',
        () => env.oneOf(['record', 'dlq'] as const),
        source,
      ),
    },
    limits: {
      maxInvalidRatio: c.SHOAL_DLQ_MAX_INVALID_RATIO as number | undefined,
      windowMs: (c.SHOAL_DLQ_RATIO_WINDOW_SECONDS as number) * 1000,
      minWindowMessages: c.SHOAL_DLQ_RATIO_MIN_MESSAGES as number,
      maxConsecutive: c.SHOAL_DLQ_MAX_CONSECUTIVE as number | undefined,
    },
    ledgerResendWindowMs: (c.SHOAL_LEDGER_RESEND_WINDOW_HOURS as number) * 3_600_000,
    parking: {
      orderedTopics: c.SHOAL_ORDERED_TOPICS as string[],
      maxParkedMessages: c.SHOAL_MAX_PARKED_MESSAGES as number,
      parkedDeadlineMs: (c.SHOAL_PARKED_DEADLINE_SECONDS as number) * 1000,
    },
    references: referenceRulesFromEnv(source),
  };
}
