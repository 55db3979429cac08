import { env, loadConfig, z, type Env } from '@shoal/config';
import { parseTokens } from './auth.js';

/** Every variable the agent API reads at start (a bad or missing one stops the process, named; a token is never shown). */
export const agentApiEnv = {
  SHOAL_API_PORT: env.port().default(8091),
  SHOAL_API_HOST: z.string().default('127.0.0.1'),
  /** `actor:token:scope+scope`, comma-separated (scopes: read, claim, write, admin) */
  SHOAL_API_TOKENS: z
    .string({ error: 'expected a comma-separated list of `actor:token:scope+scope`' })
    .min(1, { error: 'expected at least one `actor:token:scope+scope`' })
    .transform((value, ctx) => {
      try {
        return parseTokens(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
  /** Requests per token per SHOAL_API_RATE_WINDOW_SECONDS; past it 429 with Retry-After. */
  SHOAL_API_RATE_LIMIT: env.positiveInt().default(6000),
  SHOAL_API_RATE_WINDOW_SECONDS: env.positiveInt().default(60),
  SHOAL_API_BODY_LIMIT_BYTES: env.positiveInt().default(64 * 1024),
  /** How often a waiting reply reads outcomes it has not been notified of (NOTIFY's fallback). */
  SHOAL_API_OUTCOME_POLL_MS: env.positiveInt().default(1000),
};

export type AgentApiConfig = ReturnType<typeof agentApiConfig>;

/** The agent API's own variables; throws ConfigError (combine with `combinedConfig` in main). */
export function agentApiConfig(source: Env = process.env) {
  return loadConfig(agentApiEnv, source);
}
