import { createHash, createHmac } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

/**
 * Bearer tokens from SHOAL_API_TOKENS, each naming its actor (set on every command it sends) and
 * its scopes. A route needs one scope; `admin` holds them all and adds what only an admin may do
 * (force a release, reopen a closed issue, move an issue another agent holds).
 */
export const scopes = ['read', 'claim', 'write', 'admin'] as const;
export type Scope = (typeof scopes)[number];

export interface Agent {
  actor: string;
  scopes: ReadonlySet<Scope>;
  /** The token's place in SHOAL_API_TOKENS (`token-3`): what its rate limit is counted under, never the secret. */
  key: string;
  /** Derived from the bearer token: what `claimTokenOf` signs with. */
  claimKey: Buffer;
}

export const holds = (agent: Agent, scope: Scope) =>
  agent.scopes.has(scope) || agent.scopes.has('admin');

/** `actor:token:scope+scope`, comma-separated → token → agent; throws naming the bad entry by position (never the token). */
export function parseTokens(value: string): Map<string, Agent> {
  const agents = new Map<string, Agent>();
  value.split(',').forEach((entry, index) => {
    const [actor, token, scopeList, ...rest] = entry.trim().split(':');
    const where = `entry ${index + 1}`;
    if (!actor || !token || !scopeList || rest.length)
      throw new Error(`${where}: expected actor:token:scope+scope`);
    const named = scopeList.split('+');
    const unknown = named.filter((s) => !(scopes as readonly string[]).includes(s));
    if (unknown.length)
      throw new Error(
        `${where}: unknown scope ${unknown.join(', ')} (known: ${scopes.join(', ')})`,
      );
    if (agents.has(token)) throw new Error(`${where}: the same token is listed twice`);
    agents.set(token, {
      actor,
      scopes: new Set(named as Scope[]),
      key: `token-${index + 1}`,
      claimKey: createHash('sha256').update(`shoal claim tokens:${token}`).digest(),
    });
  });
  return agents;
}

declare module 'fastify' {
  interface FastifyRequest {
    agent: Agent;
  }
}

/** The onRequest hook of every /v1 route: the bearer token's agent, or 401. */
export function authenticate(tokens: Map<string, Agent>) {
  return async (request: FastifyRequest) => {
    const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];
    const agent = token === undefined ? undefined : tokens.get(token);
    if (!agent)
      throw new ApiError(
        401,
        'unauthorized',
        'a known bearer token is required (Authorization: Bearer <token>)',
      );
    request.agent = agent;
  };
}

/**
 * The raw claim token of `agent`'s claim command `commandId`: an HMAC of the command id under a key
 * only the agent's bearer token gives, so a retry with the same Idempotency-Key, on any replica,
 * is answered the same token (a random one would differ from the hash the first attempt sent, or
 * be lost with a lost reply). Unguessable without the bearer token, as a random one is.
 */
export const claimTokenOf = (agent: Agent, commandId: string): string =>
  createHmac('sha256', agent.claimKey).update(commandId).digest('base64url');

/** Throws 403 unless the request's agent holds `scope` (or admin). */
export function requireScope(request: FastifyRequest, scope: Scope): void {
  if (!holds(request.agent, scope))
    throw new ApiError(403, 'forbidden', `this token lacks the ${scope} scope`);
}
