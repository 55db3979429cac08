import type { FastifyPluginAsync } from 'fastify';
import { opsAnswer, opsPaths, type Check } from './server.js';

/**
 * The ops endpoints (`opsAnswer`: `/healthz`, `/readyz`, `/metrics`) as a Fastify plugin, for a
 * service that already serves HTTP: `app.register(opsPlugin, { checks })`, once.
 */
export const opsPlugin: FastifyPluginAsync<{ checks: Record<string, Check> }> = async (
  app,
  { checks },
) => {
  for (const path of opsPaths) {
    app.get(path, async (_request, reply) => {
      const { status, contentType, body } = await opsAnswer(path, checks);
      return reply.status(status).type(contentType).send(body);
    });
  }
};
