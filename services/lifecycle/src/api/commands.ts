import { createHash, randomUUID } from 'node:crypto';
import type { LifecycleCommand } from '@shoal/contracts';
import type { ShoalProducer } from '@shoal/producer';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  LEASE,
  claimCheck,
  holderCheck,
  moveCheck,
  resolutionProblem,
  type Asker,
  type Check,
  type IssueStatus,
  type Resolution,
} from '../transitions.js';
import { claimTokenOf, requireScope, type Agent, type Scope } from './auth.js';
import { ApiError, badRequest } from './errors.js';
import { issueIdParams, problem, readErrors, visibleOrNotFound } from './issues.js';
import { commandField } from './openapi.js';
import {
  etagOf,
  readIssue,
  readOutcomes,
  shown,
  type Decided,
  type IssueRow,
  type Reader,
} from './store.js';
import type { OutcomeWaiter } from './waiter.js';

/**
 * The write routes. Each turns a request into one lifecycle command, and answers with its outcome:
 *
 * 1. validate (the route's schema; 400 naming every bad field), authorize (the route's scope);
 * 2. a retry (an `Idempotency-Key` already decided) gets the first outcome, nothing produced (a
 *    claim's token too while it is the issue's claim: claim tokens derive from the command id, auth.ts);
 * 3. read the issue (404 unknown, deleted, hidden), If-Match (412 with the current version), the
 *    claim and move rules of `transitions.ts` (409 naming the holder and the allowed moves):
 *    every failure answers at once and nothing is produced;
 * 4. register a waiter, produce (acks=all, one request at a time: publish.ts; 503 when the broker
 *    does not acknowledge);
 * 5. the decide consumer's outcome within `Prefer: wait=N` (5 s default, at most 30) answers
 *    200 with the issue and its ETag (a claim's raw token too) or the refusal;
 *    past it, 202 with `Location: /v1/commands/{id}`.
 *
 * The command id is the request's `Idempotency-Key` (a UUID) or a fresh one. Actor and admin come
 * from the token; agents cannot send system commands (no route makes one).
 */

export interface CommandRouteOptions {
  pool: Reader;
  producer: Pick<ShoalProducer, 'publishLifecycleCommand'>;
  waiter: OutcomeWaiter<Decided>;
  retryAfterSeconds: number;
}

const WAIT = { defaultSeconds: 5, maxSeconds: 30 };

/** Fields of a command beyond those every command carries. */
type CommandFields = Omit<
  LifecycleCommand,
  'command_id' | 'issue_id' | 'actor' | 'issued_at' | 'origin' | 'admin' | 'expected_version'
>;

interface Planned {
  fields: CommandFields;
  /** The rule the command must pass against the issue as read (undefined: none beyond visibility). */
  check?: Check;
  /** A claim's raw token (`claimTokenOf` its command id), never stored. */
  claimToken?: string;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A retried claim's token: that of `first` when it was an applied claim still the issue's claim. */
function retriedClaimToken(agent: Agent, first: Decided): string | undefined {
  if (first.command !== 'claim' || first.outcome !== 'applied') return undefined;
  const token = claimTokenOf(agent, first.command_id);
  return first.current?.claim_token_sha256 === sha256(token) ? token : undefined;
}

const headerSchema = (extra: Record<string, unknown> = {}) => ({
  type: 'object',
  properties: {
    'idempotency-key': {
      description: 'The command id (a UUID): a retry with it gets the first outcome',
      type: 'string',
      format: 'uuid',
    },
    'if-match': {
      description:
        'An ETag of the issue (or `"<version>"`): applies only at that version, else 412',
      type: 'string',
      pattern: '^(W/)?"[0-9]+(-[A-Za-z0-9_-]*)?"$',
    },
    prefer: {
      description: 'RFC 7240 `wait=N`: seconds to wait for the outcome (default 5, at most 30)',
      type: 'string',
    },
    ...extra,
  },
});
const claimTokenHeader = {
  'x-claim-token': {
    description: 'The raw claim token the claim answered',
    type: 'string',
    minLength: 1,
  },
};

/** `Prefer: wait=N` in milliseconds (RFC 7240: a preference that does not parse is ignored). */
function waitMs(prefer: string | undefined): number {
  const asked = /(?:^|[,;\s])wait\s*=\s*"?(\d+)"?/i.exec(prefer ?? '')?.[1];
  const seconds =
    asked === undefined ? WAIT.defaultSeconds : Math.min(Number(asked), WAIT.maxSeconds);
  return seconds * 1000;
}

const ifMatchVersion = (header: string | undefined) =>
  header === undefined ? undefined : Number(/"(\d+)/.exec(header)![1]);

const issueSummary = (
  issue: Pick<IssueRow, 'status' | 'version' | 'claimed_by' | 'claim_expires_at'>,
) => ({
  status: issue.status,
  version: issue.version,
  claimed_by: issue.claimed_by,
  claim_expires_at: issue.claim_expires_at,
});

/** A refusal as the API answers it: 412 for a version conflict, 404 for a stale issue, else 409. */
function refusal(
  reason: string,
  detail: string,
  issue: ReturnType<typeof issueSummary> | null,
  allowed: readonly string[] | null,
): ApiError {
  if (reason === 'version_conflict')
    return new ApiError(412, reason, detail, { current_version: issue?.version });
  if (['stale_reference', 'unknown_reference', 'unknown_issue', 'hidden'].includes(reason))
    return new ApiError(404, 'not_found', detail);
  if (reason === 'invalid_command') return new ApiError(400, reason, detail);
  return new ApiError(409, reason, detail, { issue, allowed_transitions: allowed ?? [] });
}

export function registerCommandRoutes(app: FastifyInstance, options: CommandRouteOptions): void {
  const { pool } = options;

  async function answer(
    reply: FastifyReply,
    outcome: Decided,
    claimToken: string | undefined,
  ): Promise<unknown> {
    if (outcome.outcome === 'rejected')
      throw refusal(
        outcome.reason ?? 'rejected',
        outcome.detail ?? `refused: ${outcome.reason}`,
        outcome.issue,
        outcome.allowed_transitions,
      );
    // read-your-writes: the issue as it is now (read with the outcome), at least at its version
    const row = visibleOrNotFound(outcome.current ?? undefined, outcome.issue_id);
    const issue = shown(row);
    reply.header('etag', etagOf(issue));
    return {
      command_id: outcome.command_id,
      outcome: outcome.outcome,
      ...(outcome.reason ? { reason: outcome.reason } : {}),
      issue,
      ...(claimToken ? { claim_token: claimToken } : {}),
    };
  }

  /** Steps 2–5 above for one request; `plan` builds the command and its rule from the issue as read. */
  async function submit(
    request: FastifyRequest<{ Params: { id: number } }>,
    reply: FastifyReply,
    scope: Scope,
    plan: (
      issue: IssueRow,
      asker: Asker,
      now: number,
      commandId: string,
    ) => Planned | Promise<Planned>,
  ): Promise<unknown> {
    requireScope(request, scope);
    const headers = request.headers as Record<string, string | undefined>;
    const given = headers['idempotency-key'];
    const commandId = given ?? randomUUID();
    const wait = waitMs(headers.prefer);
    reply.header('preference-applied', `wait=${wait / 1000}`);
    if (given !== undefined) {
      const first = (await readOutcomes(pool, [given])).get(given);
      if (first) {
        if (first.issue_id !== request.params.id || first.actor !== request.agent.actor)
          throw badRequest([
            {
              path: '/headers/idempotency-key',
              message: 'names a command of another issue or actor',
            },
          ]);
        return answer(reply, first, retriedClaimToken(request.agent, first));
      }
    }

    const id = request.params.id;
    const issue = visibleOrNotFound(await readIssue(pool, id), id);
    const expected = ifMatchVersion(headers['if-match']);
    if (expected !== undefined && expected !== issue.version)
      throw refusal(
        'version_conflict',
        `If-Match names version ${expected}; the issue is at ${issue.version}`,
        issueSummary(issue),
        null,
      );
    const token = headers['x-claim-token'];
    const asker: Asker = {
      actor: request.agent.actor,
      admin: request.agent.scopes.has('admin'),
      system: false,
      claimTokenSha256: token === undefined ? null : sha256(token),
    };
    const now = Date.now();
    const planned = await plan(issue, asker, now, commandId);
    if (planned.check && !planned.check.ok)
      throw refusal(
        planned.check.reason,
        planned.check.detail,
        issueSummary(issue),
        planned.check.allowed,
      );

    const command: LifecycleCommand = {
      command_id: commandId,
      issue_id: id,
      actor: asker.actor,
      issued_at: new Date(now).toISOString(),
      origin: 'agent',
      ...(asker.admin ? { admin: true } : {}),
      ...(expected !== undefined ? { expected_version: expected } : {}),
      ...planned.fields,
    };
    const waiting = options.waiter.register(commandId);
    try {
      await options.producer.publishLifecycleCommand(command);
    } catch (error) {
      waiting.cancel();
      request.log.warn({ err: error, command_id: commandId }, 'producing the command failed');
      throw new ApiError(
        503,
        'unavailable',
        'the broker did not acknowledge the command; retry with the same Idempotency-Key',
        { command_id: commandId },
        { 'retry-after': String(options.retryAfterSeconds) },
      );
    }
    const outcome = await waiting.outcome(wait);
    if (outcome) return answer(reply, outcome, planned.claimToken);
    return reply
      .status(202)
      .header('location', `/v1/commands/${commandId}`)
      .send({
        command_id: commandId,
        state: 'pending',
        ...(planned.claimToken ? { claim_token: planned.claimToken } : {}),
      });
  }

  const commandResponses = (extra: Record<string, unknown> = {}) => ({
    200: {
      description: 'Decided: applied (the issue after it, ETag) or ignored (a no-op)',
      type: 'object',
      required: ['command_id', 'outcome', 'issue'],
      properties: {
        command_id: { type: 'string', format: 'uuid' },
        outcome: { type: 'string', enum: ['applied', 'ignored'] },
        reason: { type: 'string' },
        issue: { $ref: 'Issue#' },
        ...extra,
      },
    },
    202: {
      description:
        'Not decided within Prefer: wait; Location: /v1/commands/{id} answers when it is',
      type: 'object',
      required: ['command_id', 'state'],
      properties: {
        command_id: { type: 'string', format: 'uuid' },
        state: { const: 'pending' },
        ...extra,
      },
      headers: { location: { type: 'string' } },
    },
    404: problem('Unknown, deleted, or its project deleted'),
    409: problem(
      'invalid_transition, claim_conflict or lease_expired: the issue as it is and the moves allowed',
    ),
    412: problem('If-Match names another version: current_version'),
    413: problem('Body too large'),
    415: problem('Not application/json'),
    503: {
      ...problem('The broker did not acknowledge; retry with the same Idempotency-Key'),
      headers: { 'retry-after': { type: 'integer' } },
    },
    ...readErrors,
  });
  const tokenReturned = {
    claim_token: {
      type: 'string',
      description:
        'The raw claim token: answered here, and to a retry with the same Idempotency-Key while it is the issue’s claim; never stored',
    },
  };
  const route = (summary: string, scope: Scope, extra: Record<string, unknown>) => ({
    summary,
    tags: ['commands'],
    security: [{ bearer: [scope] }],
    params: issueIdParams,
    ...extra,
  });
  type Req<B = unknown> = FastifyRequest<{ Params: { id: number }; Body: B }>;
  const leaseBody = {
    type: 'object',
    additionalProperties: false,
    properties: {
      lease_seconds: {
        ...commandField('lease_seconds'),
        maximum: LEASE.maxSeconds,
        default: LEASE.defaultSeconds,
      },
    },
  };

  app.post(
    '/issues/:id/claim',
    {
      schema: route(
        'Claim the issue: a lease for lease_seconds (300 by default, at most 3,600)',
        'claim',
        {
          headers: headerSchema(),
          body: leaseBody,
          response: commandResponses(tokenReturned),
        },
      ),
    },
    (request: Req<{ lease_seconds?: number }>, reply) =>
      submit(request, reply, 'claim', (issue, asker, now, commandId) => {
        const claimToken = claimTokenOf(request.agent, commandId);
        return {
          fields: {
            command: 'claim',
            claim_token: sha256(claimToken),
            lease_seconds: request.body?.lease_seconds ?? LEASE.defaultSeconds,
          },
          check: claimCheck(stateOf(issue), asker, now),
          claimToken,
        };
      }),
  );

  app.post(
    '/issues/:id/claim/renew',
    {
      schema: route('Renew the lease: lease_seconds from the decision time', 'claim', {
        headers: { ...headerSchema(claimTokenHeader), required: ['x-claim-token'] },
        body: leaseBody,
        response: commandResponses(),
      }),
    },
    (request: Req<{ lease_seconds?: number }>, reply) =>
      submit(request, reply, 'claim', (issue, asker, now) => ({
        fields: {
          command: 'renew',
          claim_token: asker.claimTokenSha256!,
          lease_seconds: request.body?.lease_seconds ?? LEASE.defaultSeconds,
        },
        check: holderCheck(stateOf(issue), asker, now, { adminMay: false }),
      })),
  );

  app.delete(
    '/issues/:id/claim',
    {
      schema: route(
        'Release the claim (the holder, by its token; an admin without one forces it)',
        'claim',
        {
          headers: headerSchema(claimTokenHeader),
          response: commandResponses(),
        },
      ),
    },
    (request: Req, reply) =>
      submit(request, reply, 'claim', (issue, asker, now) => {
        if (asker.claimTokenSha256 === null && !asker.admin)
          throw badRequest([
            {
              path: '/headers/x-claim-token',
              message: 'is required (only an admin forces a release without it)',
            },
          ]);
        return {
          fields: {
            command: 'release',
            ...(asker.claimTokenSha256 ? { claim_token: asker.claimTokenSha256 } : {}),
          },
          check: holderCheck(stateOf(issue), asker, now, { adminMay: true }),
        };
      }),
  );

  const moveFields = (asker: Asker) =>
    asker.claimTokenSha256 ? { claim_token: asker.claimTokenSha256 } : {};

  app.post(
    '/issues/:id/transitions',
    {
      schema: route('Move the issue to another status (409 lists the moves allowed)', 'write', {
        headers: headerSchema(claimTokenHeader),
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['to_status'],
          properties: {
            to_status: commandField('to_status'),
            note: commandField('note'),
            close_reason: commandField('close_reason'),
            resolution: commandField('resolution'),
          },
        },
        response: commandResponses(),
      }),
    },
    (
      request: Req<{
        to_status: IssueStatus;
        note?: string;
        close_reason?: LifecycleCommand['close_reason'];
        resolution?: LifecycleCommand['resolution'];
      }>,
      reply,
    ) =>
      submit(request, reply, 'write', (issue, asker, now) => {
        const { to_status, ...rest } = request.body;
        const problem = rest.resolution && resolutionProblem(rest.resolution);
        if (problem) throw badRequest([{ path: '/body/resolution', message: problem }]);
        const reopen =
          to_status === 'triaged' && (issue.status === 'resolved' || issue.status === 'closed');
        return {
          fields: {
            command: reopen ? 'reopen' : 'transition',
            to_status,
            ...rest,
            ...moveFields(asker),
          },
          check: moveCheck(stateOf(issue), to_status, asker, now),
        };
      }),
  );

  const resolution = commandField('resolution') as { properties: Record<string, unknown> };
  app.post(
    '/issues/:id/resolve',
    {
      schema: route(
        'Resolve (or hand over for verification): in_release (release), in_next_release, in_commit (commit_shas, repository) or now',
        'write',
        {
          headers: headerSchema(claimTokenHeader),
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['type'],
            properties: {
              type: resolution.properties.type,
              release: resolution.properties.release,
              commit_shas: { ...(resolution.properties.commit_shas as object), minItems: 1 },
              repository: resolution.properties.repository,
              notes: resolution.properties.notes,
              release_sha: commandField('release_sha'),
              to_status: {
                description: 'resolved (default) or awaiting_verification',
                type: 'string',
                enum: ['resolved', 'awaiting_verification'],
              },
            },
          },
          response: commandResponses(),
        },
      ),
    },
    (
      request: Req<
        Resolution & { release_sha?: string; to_status?: 'resolved' | 'awaiting_verification' }
      >,
      reply,
    ) =>
      submit(request, reply, 'write', (issue, asker, now) => {
        const { release_sha, to_status = 'resolved', ...given } = request.body;
        const problem = resolutionProblem(given);
        if (problem)
          throw badRequest([
            {
              path: given.type === 'in_release' ? '/body/release' : '/body/commit_shas',
              message: problem,
            },
          ]);
        return {
          fields: {
            command: 'resolve',
            to_status,
            resolution: given,
            ...(release_sha ? { release_sha } : {}),
            ...moveFields(asker),
          },
          check: moveCheck(stateOf(issue), to_status, asker, now),
        };
      }),
  );

  app.post(
    '/issues/:id/duplicate',
    {
      schema: route('Close as a duplicate of another live issue of the same project', 'write', {
        headers: headerSchema(claimTokenHeader),
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['duplicate_of'],
          properties: { duplicate_of: { type: 'integer', minimum: 1 }, note: commandField('note') },
        },
        response: commandResponses(),
      }),
    },
    (request: Req<{ duplicate_of: number; note?: string }>, reply) =>
      submit(request, reply, 'write', async (issue, asker, now) => {
        const target = request.body.duplicate_of;
        const bad = (message: string) => badRequest([{ path: '/body/duplicate_of', message }]);
        if (target === issue.issue_id) throw bad('is this issue');
        const canonical = await readIssue(pool, target);
        if (!canonical || canonical.deleted_at !== null || canonical.hidden)
          throw bad(`no live issue ${target}`);
        if (canonical.project_id !== issue.project_id)
          throw bad(`issue ${target} is in another project`);
        if (canonical.duplicate_of === issue.issue_id)
          throw bad(`issue ${target} is a duplicate of this one`);
        return {
          fields: {
            command: 'mark_duplicate',
            duplicate_of: target,
            close_reason: 'duplicate',
            ...(request.body.note ? { note: request.body.note } : {}),
            ...moveFields(asker),
          },
          check: moveCheck(stateOf(issue), 'closed', asker, now),
        };
      }),
  );

  app.post(
    '/issues/:id/notes',
    {
      schema: route('Attach a note', 'write', {
        headers: headerSchema(claimTokenHeader),
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['note'],
          properties: { note: { ...commandField('note'), minLength: 1, maxLength: 10_000 } },
        },
        response: commandResponses(),
      }),
    },
    (request: Req<{ note: string }>, reply) =>
      submit(request, reply, 'write', (_issue, asker) => ({
        fields: { command: 'add_note', note: request.body.note, ...moveFields(asker) },
      })),
  );

  app.post(
    '/issues/:id/events',
    {
      schema: route(
        "Record an agent run's event (started, progress, succeeded, failed, cancelled)",
        'write',
        {
          headers: headerSchema(claimTokenHeader),
          body: commandField('run_event'),
          response: commandResponses(),
        },
      ),
    },
    (request: Req<LifecycleCommand['run_event']>, reply) =>
      submit(request, reply, 'write', (_issue, asker) => ({
        fields: { command: 'attach_event', run_event: request.body, ...moveFields(asker) },
      })),
  );

  app.patch(
    '/issues/:id',
    {
      schema: route('Set severity, category, assignee or SLA due', 'write', {
        headers: headerSchema(claimTokenHeader),
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            severity: commandField('severity'),
            category: { ...commandField('category'), minLength: 1 },
            assignee: commandField('assignee'),
            sla_due_at: commandField('sla_due_at'),
          },
        },
        response: commandResponses(),
      }),
    },
    (
      request: Req<Pick<LifecycleCommand, 'severity' | 'category' | 'assignee' | 'sla_due_at'>>,
      reply,
    ) =>
      submit(request, reply, 'write', (_issue, asker) => ({
        fields: { command: 'update', ...request.body, ...moveFields(asker) },
      })),
  );
}

/** The rules' view of an issue row. */
function stateOf(issue: IssueRow) {
  return {
    status: issue.status,
    version: issue.version,
    claimedBy: issue.claimed_by,
    claimTokenSha256: issue.claim_token_sha256,
    claimExpiresAt: issue.claim_expires_at === null ? null : Date.parse(issue.claim_expires_at),
  };
}
