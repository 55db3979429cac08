import {
  idempotencyKeySchema,
  idempotentItemId,
  loadSchema,
  topicCatalog,
  type Occurrence,
  type StatusChange,
} from '@shoal/contracts';
import { metrics } from '@shoal/observability';
import type { ShoalProducer } from '@shoal/producer';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HttpProblem } from './problem.js';
import { contractValidation, kindOf, type Kind } from './validation.js';

export interface IngestOptions {
  producer: Pick<ShoalProducer, 'publishOccurrence' | 'publishStatusChange'>;
  /** token → scopes */
  tokens: Map<string, Set<string>>;
  maxItems: number;
  retryAfterSeconds: number;
}

/**
 * The schemas the routes share, added to Fastify once: the topic schemas from `schemas/` under
 * their type names (`Occurrence`, `StatusChange`, which name them in the OpenAPI document too)
 * and the error body.
 */
export function addIngestSchemas(app: FastifyInstance): void {
  for (const key of ['occurrences', 'statusChanges'] as const) {
    const { $schema: _draft, ...schema } = loadSchema(key);
    app.addSchema({ ...schema, $id: topicCatalog[key].type });
  }
  app.addSchema({
    $id: 'Problem',
    type: 'object',
    required: ['error', 'message'],
    properties: {
      error: { type: 'string' },
      message: { type: 'string' },
      problems: {
        description: 'Every bad field of every item (`index`: its place in the body) or header',
        type: 'array',
        items: {
          type: 'object',
          required: ['path', 'message'],
          properties: {
            index: { type: 'integer' },
            path: { type: 'string' },
            message: { type: 'string' },
          },
        },
      },
    },
  });
}

const statusChangeItem = { $ref: 'StatusChange#' };
const routes = {
  occurrences: {
    url: '/v1/occurrences',
    summary:
      'Publish occurrences (Sentry issue-platform payloads accepted unchanged; payload_type "status_change" items go to status changes)',
    item: {
      if: {
        type: 'object',
        required: ['payload_type'],
        properties: { payload_type: { const: 'status_change' } },
      },
      then: statusChangeItem,
      else: { $ref: 'Occurrence#' },
    },
  },
  statusChanges: {
    url: '/v1/status-changes',
    summary: 'Publish status changes (resolve / ignore / unresolve by fingerprint)',
    item: statusChangeItem,
  },
} as const;

function routeSchema(route: Kind, maxItems: number) {
  const { summary, item } = routes[route];
  const problem = (description: string) => ({ description, $ref: 'Problem#' });
  return {
    summary,
    tags: ['ingest'],
    security: [{ bearer: ['ingest'] }],
    headers: {
      type: 'object',
      properties: { 'idempotency-key': idempotencyKeySchema },
    },
    body: { oneOf: [item, { type: 'array', minItems: 1, maxItems, items: item }] },
    response: {
      202: {
        description: 'Every message acknowledged by the broker (acks=all); `ids` in body order',
        type: 'object',
        required: ['accepted', 'ids'],
        properties: {
          accepted: { type: 'integer' },
          ids: { type: 'array', items: { type: 'string' } },
        },
      },
      400: problem(
        'Invalid JSON, payload or Idempotency-Key; every bad field named; nothing was published',
      ),
      401: problem('Missing or unknown token'),
      403: problem('The token lacks the ingest scope'),
      413: problem(`Body larger than the limit, or more than ${maxItems} items`),
      415: problem('Content type is not application/json'),
      503: {
        ...problem(
          'The broker did not acknowledge; retry after the Retry-After seconds (ids make retries safe)',
        ),
        headers: { 'retry-after': { type: 'integer', description: 'Seconds to wait' } },
      },
    },
  };
}

/** `POST /v1/occurrences` and `POST /v1/status-changes`: validated, published, acknowledged. */
export function registerIngestRoutes(app: FastifyInstance, options: IngestOptions): void {
  const authorize = async (request: FastifyRequest) => {
    const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];
    const scopes = token === undefined ? undefined : options.tokens.get(token);
    if (!scopes)
      throw new HttpProblem(
        401,
        'unauthorized',
        'a bearer token is required (Authorization: Bearer <token>)',
      );
    if (!scopes.has('ingest'))
      throw new HttpProblem(403, 'forbidden', 'this token lacks the ingest scope');
  };

  const publish = (route: Kind) => async (request: FastifyRequest, reply: FastifyReply) => {
    // validated by the route's schema (contractValidation) before this runs
    const items: unknown[] = Array.isArray(request.body) ? request.body : [request.body];
    const key = request.headers['idempotency-key'] as string | undefined;
    try {
      const published = await Promise.all(
        items.map((item, index) =>
          kindOf(route, item) === 'occurrences'
            ? options.producer.publishOccurrence(item as Occurrence)
            : options.producer.publishStatusChange(
                item as StatusChange,
                key === undefined ? undefined : idempotentItemId(key, index),
              ),
        ),
      );
      for (const p of published) metrics.ingestMessages.inc({ topic: p.topic });
      return reply
        .status(202)
        .send({ accepted: published.length, ids: published.map((p) => p.id) });
    } catch (error) {
      request.log.warn({ err: error }, 'producer unavailable');
      reply.header('retry-after', String(options.retryAfterSeconds));
      throw new HttpProblem(
        503,
        'unavailable',
        'the broker did not acknowledge the messages; retry later (ids make a retry safe)',
      );
    }
  };

  for (const route of ['occurrences', 'statusChanges'] as const) {
    app.post(
      routes[route].url,
      {
        schema: routeSchema(route, options.maxItems),
        validatorCompiler: contractValidation(route, options.maxItems),
        onRequest: authorize,
      },
      publish(route),
    );
  }
}
