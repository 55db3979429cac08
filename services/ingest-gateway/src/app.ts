import swagger from '@fastify/swagger';
import { metrics, opsPlugin, type Check, type Logger } from '@shoal/observability';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { addIngestSchemas, registerIngestRoutes, type IngestOptions } from './ingest.js';
import { HttpProblem } from './problem.js';

export interface GatewayOptions extends Omit<IngestOptions, 'retryAfterSeconds'> {
  bodyLimitBytes: number;
  checks: Record<string, Check>;
  logger: Logger;
  retryAfterSeconds?: number;
}

/**
 * The ingest gateway as a Fastify app: the ingest routes (schema-first: validation and the
 * OpenAPI document at `/openapi.json` both come from `schemas/`), the ops endpoints, one error
 * shape `{error, message, problems?}` and request metrics.
 */
export async function buildGateway(options: GatewayOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: options.bodyLimitBytes,
  });
  // JSON only: anything else is 415, not a string that then fails validation
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof HttpProblem) {
      return reply.status(error.statusCode).send({
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

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Shoal ingest gateway', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    // the API's routes are tagged; the ops endpoints and this document are not part of it
    hideUntagged: true,
    // shared schemas keep their names (`Occurrence`, `StatusChange`, `Problem`) as components
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
  });
  addIngestSchemas(app);
  registerIngestRoutes(app, { ...options, retryAfterSeconds: options.retryAfterSeconds ?? 5 });
  app.get('/openapi.json', async () => app.swagger());
  await app.register(opsPlugin, { checks: options.checks });
  return app;
}
