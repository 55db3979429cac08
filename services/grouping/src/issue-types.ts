import { ConfigError, z } from '@shoal/config';

/**
 * What an issue type declares about creating new groups (Sentry's `noise_config` and creation quota):
 * - `noise`: create a group only once `threshold` occurrences of a hash fell within `windowSeconds`
 *   (by detection time); until then the occurrences are held back.
 * - `newGroupsPerMinute`: at most this many new groups per project per minute of detection time;
 *   occurrences over it are held back too, and their group is created by the next occurrence of the
 *   hash that finds room.
 */
export interface IssueTypePolicy {
  noise?: { threshold: number; windowSeconds: number };
  newGroupsPerMinute?: number;
}

export type IssueTypePolicies = ReadonlyMap<number, IssueTypePolicy>;

const policySchema = z
  .object({
    noise: z
      .object({
        threshold: z.number().int().min(1),
        windowSeconds: z.number().int().min(1),
      })
      .strict()
      .optional(),
    newGroupsPerMinute: z.number().int().min(1).optional(),
  })
  .strict();

const policiesSchema = z.record(
  z.string().regex(/^\d+$/, 'expected an issue type number'),
  policySchema,
);

export const ISSUE_TYPES_VARIABLE = 'SHOAL_GROUPING_ISSUE_TYPES';

/**
 * `SHOAL_GROUPING_ISSUE_TYPES`: JSON keyed by issue type, e.g.
 * `{"1006": {"noise": {"threshold": 3, "windowSeconds": 86400}, "newGroupsPerMinute": 5}}`.
 * Types not named create a group on their first occurrence, without a rate limit.
 */
export function issueTypePoliciesFromEnv(
  env: Record<string, string | undefined> = process.env,
): IssueTypePolicies {
  const text = env[ISSUE_TYPES_VARIABLE];
  if (!text) return new Map();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([
      { variable: ISSUE_TYPES_VARIABLE, expected: `JSON (${(error as Error).message})`, got: text },
    ]);
  }
  const result = policiesSchema.safeParse(json);
  if (!result.success)
    throw new ConfigError(
      result.error.issues.map((issue) => ({
        variable: `${ISSUE_TYPES_VARIABLE} at ${issue.path.join('.') || '(top level)'}`,
        expected: issue.message,
        got: text,
      })),
    );
  return new Map(Object.entries(result.data).map(([type, policy]) => [Number(type), policy]));
}
