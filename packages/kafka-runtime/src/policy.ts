import { env, loadConfig, z, type Env } from '@shoal/config';
import { reasonCodes, type ReasonCode } from '@shoal/contracts';
import { entityKinds, type EntityKind } from './errors.js';

export type Action = 'dlq' | 'skip';

/** What happens to a permanently failed message: per reason code, and per entity for stale references. */
export interface Policy {
  byReason: Partial<Record<ReasonCode, Action>>;
  staleReferenceByEntity: Partial<Record<EntityKind, Action>>;
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

export function decideAction(policy: Policy, reason: ReasonCode, entity?: EntityKind): Action {
  if (reason === 'stale_reference' && entity && policy.staleReferenceByEntity[entity]) {
    return policy.staleReferenceByEntity[entity]!;
  }
  return policy.byReason[reason] ?? 'dlq';
}

const action = () => env.oneOf(['dlq', 'skip']).optional();
const ratio = () =>
  z.coerce
    .number({ error: 'expected a number from 0 to 1' })
    .min(0, { error: 'expected a number from 0 to 1' })
    .max(1, { error: 'expected a number from 0 to 1' });

const policyEnv = {
  ...Object.fromEntries(reasonCodes.map((r) => [`SHOAL_POLICY_${r.toUpperCase()}`, action()])),
  ...Object.fromEntries(
    entityKinds.map((k) => [`SHOAL_POLICY_STALE_REFERENCE_${k.toUpperCase()}`, action()]),
  ),
  SHOAL_DLQ_MAX_INVALID_RATIO: ratio().optional(),
  SHOAL_DLQ_RATIO_WINDOW_SECONDS: env.positiveInt().default(60),
  SHOAL_DLQ_RATIO_MIN_MESSAGES: env.positiveInt().default(100),
  SHOAL_DLQ_MAX_CONSECUTIVE: env.positiveInt().optional(),
  // dead-lettered and replayed ids are kept as long as the dead letters whatever this says (retention.ts)
  SHOAL_LEDGER_RESEND_WINDOW_HOURS: env.positiveInt().default(24),
} as Record<string, z.ZodType>;

export interface FailurePolicyConfig {
  policy: Policy;
  limits: DlqLimits;
  /** How long an applied message id stays in the ledger, so a redelivery or re-send is a duplicate. */
  ledgerResendWindowMs: number;
}

/**
 * From the service's environment: `SHOAL_POLICY_<REASON>=dlq|skip` (e.g. SHOAL_POLICY_STALE_REFERENCE=skip),
 * `SHOAL_POLICY_STALE_REFERENCE_<ENTITY>=…` for one entity kind, and the dead-letter limits.
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
      staleReferenceByEntity: Object.fromEntries(
        entityKinds.flatMap((k) =>
          c[`SHOAL_POLICY_STALE_REFERENCE_${k.toUpperCase()}`]
            ? [[k, c[`SHOAL_POLICY_STALE_REFERENCE_${k.toUpperCase()}`]]]
            : [],
        ),
      ),
    },
    limits: {
      maxInvalidRatio: c.SHOAL_DLQ_MAX_INVALID_RATIO as number | undefined,
      windowMs: (c.SHOAL_DLQ_RATIO_WINDOW_SECONDS as number) * 1000,
      minWindowMessages: c.SHOAL_DLQ_RATIO_MIN_MESSAGES as number,
      maxConsecutive: c.SHOAL_DLQ_MAX_CONSECUTIVE as number | undefined,
    },
    ledgerResendWindowMs: (c.SHOAL_LEDGER_RESEND_WINDOW_HOURS as number) * 3_600_000,
  };
}
