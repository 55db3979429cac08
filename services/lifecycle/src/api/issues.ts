import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requireScope } from './auth.js';
import { ApiError, badRequest } from './errors.js';
import { commandField, eventField } from './openapi.js';
import {
  etagOf,
  listIssues,
  readHistory,
  readIssue,
  readOutcomes,
  shown,
  type IssueFilters,
  type IssueRow,
  type Position,
  type Reader,
} from './store.js';
import { CLAIMABLE, DONE_STATUSES, OPEN_STATUSES, type IssueStatus } from '../transitions.js';

/** The read routes: `GET /v1/issues`, `GET /v1/issues/{id}` (history, ETag, 304), `GET /v1/commands/{id}`. */

const statusEnum = (eventField('status') as { enum: IssueStatus[] }).enum;
const severity = commandField('severity');

export const problem = (description: string) => ({ description, $ref: 'Problem#' });
export const readErrors = {
  400: problem('A bad parameter; every one named'),
  401: problem('Missing or unknown token'),
  403: problem('The token lacks the scope'),
  429: {
    ...problem('More requests than this token may send in the window'),
    headers: { 'retry-after': { type: 'integer', description: 'Seconds to wait' } },
  },
};

export const issueIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'integer', minimum: 1, description: 'The issue id (= its group id)' } },
} as const;

/** Cursors: the keyset position, opaque to clients. */
const encodeCursor = (position: Position) =>
  Buffer.from(JSON.stringify([position.at, position.id])).toString('base64url');
const START: Position = { at: '-infinity', id: 0 };

function decodeCursor(cursor: string): Position {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as [unknown, unknown];
    if (
      typeof at === 'string' &&
      (at === '-infinity' || !Number.isNaN(Date.parse(at))) &&
      Number.isSafeInteger(id)
    )
      return { at, id: id as number };
  } catch {
    // a cursor that is not ours
  }
  throw badRequest([{ path: '/query/cursor', message: 'not a cursor this API gave' }]);
}

/**
 * 404 for an issue an agent may not see: never opened, deleted (its group was), or hidden (its
 * project was deleted). Deleted and hidden are told apart in the message only.
 */
export function visibleOrNotFound(issue: IssueRow | undefined, id: number): IssueRow {
  if (!issue) throw new ApiError(404, 'not_found', `no issue ${id}`);
  if (issue.deleted_at !== null)
    throw new ApiError(404, 'not_found', `issue ${id} was deleted (its group was deleted)`);
  if (issue.hidden) throw new ApiError(404, 'not_found', `no issue ${id} (its project is deleted)`);
  return issue;
}

export function registerReadRoutes(app: FastifyInstance, options: { pool: Reader }): void {
  const { pool } = options;

  /**
   * A conditional GET whose ETag still matches answers 304 here, in onRequest: before the rate
   * limit counts the request (GitHub's rule: a 304 is not charged) and before the body is read.
   * Anything else (no If-None-Match, another ETag, an id that is not one) goes on to the route.
   */
  const notModified = async (request: FastifyRequest, reply: FastifyReply) => {
    const conditional = request.headers['if-none-match'];
    const id = Number((request.params as { id?: string }).id);
    if (conditional === undefined || !Number.isSafeInteger(id) || id < 1) return;
    requireScope(request, 'read');
    const row = await readIssue(pool, id);
    if (!row || row.deleted_at !== null || row.hidden) return;
    const etag = etagOf(shown(row));
    if (conditional.split(/\s*,\s*/).includes(etag))
      return reply.header('etag', etag).status(304).send();
  };

  app.get<{
    Querystring: Omit<IssueFilters, 'status'> & {
      cursor?: string;
      limit: number;
      status?: string[];
    };
  }>(
    '/issues',
    {
      schema: {
        summary: 'List live issues (not deleted, project not deleted), oldest change first',
        description:
          'Keyset pages in (updated_at, id) order. `next_cursor` is always given: passed back, it returns what changed after this page (an empty page keeps the position), so a client polls with it.',
        tags: ['issues'],
        security: [{ bearer: ['read'] }],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: {
              description: `Repeatable; \`open\` (${OPEN_STATUSES.join(', ')}) or \`done\` (${DONE_STATUSES.join(', ')})`,
              type: 'array',
              items: { type: 'string', enum: [...statusEnum, 'open', 'done'] },
            },
            assignee: { type: 'string' },
            claimed_by: { type: 'string', description: 'Holder of a live lease' },
            project: { type: 'integer', minimum: 1 },
            severity: { type: 'array', items: severity },
            category: { type: 'string' },
            claimable: {
              type: 'boolean',
              description: 'In a status a claim may start from, with no live lease',
            },
            updated_since: { type: 'string', format: 'date-time' },
            trace_id: { type: 'string' },
            sla_breached: {
              type: 'boolean',
              description: 'SLA due passed and not resolved or closed',
            },
            duplicates: { type: 'boolean', description: 'true: only duplicates; false: hide them' },
            cursor: { type: 'string' },
            limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['issues', 'next_cursor', 'has_more'],
            properties: {
              issues: { type: 'array', items: { $ref: 'Issue#' } },
              next_cursor: { type: 'string' },
              has_more: { type: 'boolean' },
            },
          },
          ...readErrors,
        },
      },
    },
    async (request) => {
      requireScope(request, 'read');
      const { cursor, limit = 50, status, ...rest } = request.query;
      const after = cursor === undefined ? undefined : decodeCursor(cursor);
      const statuses = status?.flatMap((s) =>
        s === 'open' ? OPEN_STATUSES : s === 'done' ? DONE_STATUSES : [s as IssueStatus],
      );
      const rows = await listIssues(pool, { ...rest, status: statuses }, after, limit + 1, [
        ...CLAIMABLE,
      ]);
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        issues: page.map(shown),
        next_cursor: encodeCursor(
          last ? { at: last.position, id: last.issue_id } : (after ?? START),
        ),
        has_more: rows.length > limit,
      };
    },
  );

  app.get<{ Params: { id: number } }>(
    '/issues/:id',
    {
      onRequest: notModified,
      schema: {
        summary:
          'One issue with its history (every transition, claim, note, run event, field change)',
        description: 'ETag: the representation; If-None-Match with it answers 304.',
        tags: ['issues'],
        security: [{ bearer: ['read'] }],
        params: issueIdParams,
        response: {
          200: {
            type: 'object',
            required: ['issue', 'history'],
            properties: {
              issue: { $ref: 'Issue#' },
              history: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    version: { type: 'integer' },
                    event_type: eventField('event_type'),
                    command_id: { type: 'string', format: 'uuid' },
                    actor: { type: 'string' },
                    origin: { type: 'string', enum: ['agent', 'system'] },
                    from_status: { type: ['string', 'null'] },
                    to_status: { type: 'string' },
                    at: { type: 'string', format: 'date-time' },
                    occurred_at: { type: ['string', 'null'], format: 'date-time' },
                    seconds_in_previous_state: { type: ['number', 'null'] },
                    details: { type: 'object', additionalProperties: true },
                  },
                },
              },
            },
          },
          304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
          404: problem('Unknown, deleted, or its project deleted'),
          ...readErrors,
        },
      },
    },
    async (request, reply) => {
      requireScope(request, 'read');
      const { id } = request.params;
      const issue = shown(visibleOrNotFound(await readIssue(pool, id), id));
      reply.header('etag', etagOf(issue));
      return { issue, history: await readHistory(pool, id) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/commands/:id',
    {
      schema: {
        summary: "A command's outcome, as the lifecycle service decided it",
        description:
          'Where a 202 points. 404 until the command is decided (or when it was never sent).',
        tags: ['commands'],
        security: [{ bearer: ['read'] }],
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', format: 'uuid' } },
        },
        response: {
          200: { $ref: 'Outcome#' },
          404: problem('Not decided yet, or never sent'),
          ...readErrors,
        },
      },
    },
    async (request) => {
      requireScope(request, 'read');
      const decided = (await readOutcomes(pool, [request.params.id])).get(request.params.id);
      if (!decided)
        throw new ApiError(
          404,
          'not_decided',
          `no outcome recorded for command ${request.params.id} (not decided yet, or never sent)`,
        );
      const { current: _current, ...outcome } = decided;
      return outcome;
    },
  );
}
