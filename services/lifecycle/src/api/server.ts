import rateLimit from '@fastify/rate-limit';
import type { KafkaConnection, RegistryConnection } from '@shoal/config/connections';
import type { Pool } from '@shoal/db';
import type { Logger } from '@shoal/observability';
import { createProducer, type ShoalProducer } from '@shoal/producer';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { authenticate } from './auth.js';
import { registerCommandRoutes } from './commands.js';
import type { AgentApiConfig } from './config.js';
import { ApiError, installErrorHandler } from './errors.js';
import { registerReadRoutes } from './issues.js';
import { oneRequestAtATime } from './publish.js';
import { addSharedSchemas, registerOpenApi } from './openapi.js';
import type { DecidedHere } from '../decided-here.js';
import { boundedReader, decidedOf, readOutcomes, type Decided } from './store.js';
import { validatorCompiler } from './validation.js';
import { OutcomeWaiter } from './waiter.js';

export interface AgentApiOptions {
  config: AgentApiConfig;
  /**
   * A pool on lifecycle's schema (its `search_path`): the API reads its tables, never writes them,
   * and holds at most API_POOL_CONNECTIONS of its connections (one for LISTEN, one for the
   * waiter's reads).
   */
  pool: Pool;
  producer: Pick<ShoalProducer, 'publishLifecycleCommand'>;
  logger: Logger;
  /** Seconds a 503 asks the client to wait (default 5). */
  retryAfterSeconds?: number;
  /**
   * The decide consumer of this process, which hands over its outcomes before they commit: a reply
   * is answered from them once their NOTIFY comes, without reading them back (else every outcome
   * is read).
   */
  decidedHere?: DecidedHere;
}

/** Connections of lifecycle's pool the API may hold at once: LISTEN's, the waiter's read, and a few for requests' reads. */
export const API_POOL_CONNECTIONS = 6;

export interface AgentApi {
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * The agent HTTP API as a Fastify app (not listening): `/v1` routes behind bearer tokens and a
 * per-token rate limit, schema-first (validation and `/openapi.json` from the same schemas, built
 * from `schemas/`), one error shape. Writes are commands produced to shoal.lifecycle-commands.v1;
 * replies wait for their outcome through the waiter.
 */
export async function buildAgentApi(options: AgentApiOptions): Promise<AgentApi> {
  const { config } = options;
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: config.SHOAL_API_BODY_LIMIT_BYTES,
  });
  // JSON only: anything else is 415
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  installErrorHandler(app);

  // LISTEN holds one of the API's connections and the waiter's reads (one at a time) another, so
  // that outcomes are never queued behind requests' reads; requests share the others
  const reads = boundedReader(options.pool, API_POOL_CONNECTIONS - 2);
  const waiter = new OutcomeWaiter<Decided>({
    pool: options.pool,
    pollMs: config.SHOAL_API_OUTCOME_POLL_MS,
    logger: options.logger,
    read: (ids) => readOutcomes(options.pool, ids),
  });
  await waiter.start();
  const unlisten = options.decidedHere?.listen((txid, batch) =>
    waiter.recorded(
      txid,
      batch.commands.map((command) => ({
        id: command.command_id,
        outcome: () => decidedOf(command, batch.issue(command.issue_id)),
      })),
    ),
  );

  await registerOpenApi(app);
  addSharedSchemas(app);
  app.get('/openapi.json', async () => app.swagger());

  await app.register(
    async (v1) => {
      v1.addHook('onRequest', authenticate(config.SHOAL_API_TOKENS));
      // per token, after authentication and before the body is read
      await v1.register(rateLimit, {
        hook: 'preParsing',
        max: config.SHOAL_API_RATE_LIMIT,
        timeWindow: config.SHOAL_API_RATE_WINDOW_SECONDS * 1000,
        keyGenerator: (request) => request.agent.key,
        errorResponseBuilder: (_request, context) =>
          new ApiError(
            429,
            'rate_limited',
            `more than ${context.max} requests in ${context.after}; retry after the Retry-After seconds`,
          ),
      });
      registerReadRoutes(v1, { pool: reads });
      registerCommandRoutes(v1, {
        pool: reads,
        producer: {
          publishLifecycleCommand: oneRequestAtATime((command) =>
            options.producer.publishLifecycleCommand(command),
          ),
        },
        waiter,
        retryAfterSeconds: options.retryAfterSeconds ?? 5,
      });
    },
    { prefix: '/v1' },
  );

  return {
    app,
    close: async () => {
      await app.close();
      unlisten?.();
      await waiter.close();
    },
  };
}

export interface StartAgentApiOptions extends Omit<AgentApiOptions, 'producer'> {
  kafka: KafkaConnection;
  registry: RegistryConnection;
  /** SHOAL_TOPIC_NAMESPACE */
  namespace: string;
}

/** How the API's producer retries a request the broker does not acknowledge, before answering 503. */
export const API_PRODUCER_RETRY = { retries: 3 };

/**
 * What lifecycle's main runs: the agent API listening on SHOAL_API_HOST:SHOAL_API_PORT with a
 * producer of its own (acks=all, idempotent, one request at a time: publish.ts). `close` stops accepting, answers what
 * it holds, then flushes the producer.
 */
export async function startAgentApi(
  options: StartAgentApiOptions,
): Promise<AgentApi & { url: string }> {
  const producer = createProducer({
    brokers: options.kafka.brokers,
    security: options.kafka,
    registryUrl: options.registry.url,
    registryAuth: options.registry.auth,
    namespace: options.namespace,
    clientId: 'lifecycle-api',
    // no linger of its own: what comes while a request is on its way waits for it and goes next,
    // together (publish.ts), so a lone command goes at once and a busy API still sends few requests
    lingerMs: 0,
    retry: API_PRODUCER_RETRY,
  });
  const api = await buildAgentApi({ ...options, producer });
  const url = await api.app.listen({
    port: options.config.SHOAL_API_PORT,
    host: options.config.SHOAL_API_HOST,
  });
  options.logger.info({ url }, 'agent API listening');
  return {
    ...api,
    url,
    close: async () => {
      await api.close();
      await producer.close();
    },
  };
}
