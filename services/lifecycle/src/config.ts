import { ConfigError } from '@shoal/config';
import { DEFAULT_SLA_MS, SEVERITIES, type Severity, type SlaMs } from './transitions.js';

/**
 * The decide consumer's and the sweeper's configuration from the environment; a bad variable is a
 * `ConfigError` naming it. (The API and intake read their own variables beside these.)
 * - `SHOAL_LIFECYCLE_SLA` (default `critical=4h,high=24h,medium=3d,low=7d`): SLA per severity, any
 *   subset (the rest keep their defaults); units s, m, h, d.
 * - `SHOAL_LIFECYCLE_SWEEP_SECONDS` (default 5): how often the sweeper looks for lapsed leases.
 */

export interface LifecycleConfig {
  slaMs: SlaMs;
  sweepIntervalMs: number;
}

const SLA = 'SHOAL_LIFECYCLE_SLA';
const SWEEP = 'SHOAL_LIFECYCLE_SWEEP_SECONDS';
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `critical=4h,low=7d` over the defaults; null when any pair is not one. */
function parseSla(text: string): SlaMs | null {
  const sla: Record<Severity, number> = { ...DEFAULT_SLA_MS };
  for (const part of text.split(',')) {
    const match = /^\s*(\w+)\s*=\s*(\d{1,6})\s*([smhd])\s*$/.exec(part);
    const severity = match?.[1] as Severity | undefined;
    if (!match || !severity || !SEVERITIES.includes(severity) || Number(match[2]) === 0)
      return null;
    sla[severity] = Number(match[2]) * UNIT_MS[match[3] as keyof typeof UNIT_MS];
  }
  return sla;
}

export function lifecycleConfigFromEnv(
  env: Record<string, string | undefined> = process.env,
): LifecycleConfig {
  const problems: ConstructorParameters<typeof ConfigError>[0] = [];
  const slaMs = env[SLA] === undefined ? DEFAULT_SLA_MS : parseSla(env[SLA]);
  if (!slaMs)
    problems.push({
      variable: SLA,
      expected: `severity=duration pairs, e.g. critical=4h,low=7d (severities ${SEVERITIES.join(', ')}; units s, m, h, d)`,
      got: env[SLA],
    });
  const sweepText = env[SWEEP];
  const sweepSeconds = sweepText === undefined ? 5 : Number(sweepText);
  if (!Number.isFinite(sweepSeconds) || sweepSeconds <= 0 || sweepSeconds > 3600)
    problems.push({
      variable: SWEEP,
      expected: 'seconds, more than 0 and at most 3600',
      got: sweepText,
    });
  if (problems.length) throw new ConfigError(problems);
  return { slaMs: slaMs!, sweepIntervalMs: Math.round(sweepSeconds * 1000) };
}
