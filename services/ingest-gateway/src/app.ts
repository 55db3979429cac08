import {
  problemsOf,
  type FieldProblem,
  type Occurrence,
  type StatusChange,
} from '@shoal/contracts';
import { metrics, metricsRegistry, readiness, type Check, type Logger } from '@shoal/observability';
import type { ShoalProducer } from '@shoal/producer';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { openApiDocument } from './openapi.js';

export interface GatewayOptions {
  producer: Pick<ShoalProducer, 'publishOccurrence' | 'publishStatusChange'>;
  /** token → scopes */
  tokens: Map<string, Set<string>>;
  maxItems: number;
  bodyLimitBytes: number;
  checks: Record<string, Check>;
  logger: Logger;
  retryAfterSeconds?: number;
}

type Kind = 'occurrences' | 'statusChanges';

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problems?: (FieldProblem & { index: number })[],
  ) {
    super(message);
  }
}

/** Each item's topic: Sentry's single stream mixes both payload types, so /v1/occurrences routes by it. */
function kindOf(route: Kind, item: unknown): Kind {
  const payloadType = (item as { payload_type?: unknown } | null)?.payload_type;
  return route === 'occurrences' && payloadType === 'status_change' ? 'statusChanges' : route;
}

export async function buildGateway(options: GatewayOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: options.bodyLimitBytes,
  });
  const retryAfter = String(options.retryAfterSeconds ?? 5);
  // JSON only: anything else is 415, not a string that then fails validation
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof HttpProblem) {
      return reply.status(error.status).send({
        error: error.code,
        message: error.message,
        ...(error.problems ? { problems: error.problems } : {}),
      });
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    // Fastify's own: FST_ERR_CTP_BODY_TOO_LARGE 413, FST_ERR_CTP_INVALID_MEDIA_TYPE 415, invalid JSON 400
    return reply.status(status).send({ error: error.code ?? 'error', message: error.message });
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.ingestRequests.inc({
      route: request.routeOptions.url ?? 'unknown',
      status: String(reply.statusCode),
    });
  });

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

  const ingest = (route: Kind) => async (request: FastifyRequest, reply: FastifyReply) => {
    const body = request.body;
    const items = Array.isArray(body) ? body : [body];
    if (items.length === 0) throw new HttpProblem(400, 'invalid_payload', 'the array is empty');
    if (items.length > options.maxItems) {
      throw new HttpProblem(
        413,
        'too_many_items',
        `${items.length} items; at most ${options.maxItems} per request`,
      );
    }
    // all or nothing: every item is validated before any is published
    const problems = items.flatMap((item, index) =>
      problemsOf(kindOf(route, item), item).map((p) => ({ index, ...p })),
    );
    if (problems.length) {
      throw new HttpProblem(
        400,
        'invalid_payload',
        `${new Set(problems.map((p) => p.index)).size} of ${items.length} items are invalid; nothing was published`,
        problems,
      );
    }
    try {
      const published = await Promise.all(
        items.map((item) =>
          kindOf(route, item) === 'occurrences'
            ? options.producer.publishOccurrence(item as Occurrence)
            : options.producer.publishStatusChange(item as StatusChange),
        ),
      );
      for (const p of published) metrics.ingestMessages.inc({ topic: p.topic });
      return reply
        .status(202)
        .send({ accepted: published.length, ids: published.map((p) => p.id ?? null) });
    } catch (error) {
      request.log.warn({ err: error }, 'producer unavailable');
      reply.header('retry-after', retryAfter);
      throw new HttpProblem(
        503,
        'unavailable',
        'the broker did not acknowledge the messages; retry later (ids make a retry safe)',
      );
    }
  };

  app.post('/v1/occurrences', { onRequest: authorize }, ingest('occurrences'));
  app.post('/v1/status-changes', { onRequest: authorize }, ingest('statusChanges'));
  const document = openApiDocument(options.maxItems);
  app.get('/openapi.json', async () => document);
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const { ready, body } = await readiness(options.checks);
    return reply.status(ready ? 200 : 503).send(body);
  });
  app.get('/metrics', async (_request, reply) =>
    reply.type(metricsRegistry.contentType).send(await metricsRegistry.metrics()),
  );
  return app;
}
