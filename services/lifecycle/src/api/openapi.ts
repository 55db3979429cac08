import swagger from '@fastify/swagger';
import { loadSchema } from '@shoal/contracts';
import type { FastifyInstance } from 'fastify';

type JsonSchema = Record<string, unknown>;
const commandProperties = loadSchema('lifecycleCommands').properties as Record<string, JsonSchema>;
const eventProperties = loadSchema('lifecycle').properties as Record<string, JsonSchema>;

/** A property of the lifecycle command schema in `schemas/` (the bodies' fields are the commands'). */
export const commandField = (name: string): JsonSchema => {
  const field = commandProperties[name];
  if (!field) throw new Error(`schemas/ has no lifecycle command field ${name}`);
  return field;
};

/** A property of the lifecycle event schema in `schemas/`. */
export const eventField = (name: string): JsonSchema => {
  const field = eventProperties[name];
  if (!field) throw new Error(`schemas/ has no lifecycle event field ${name}`);
  return field;
};

/**
 * The shared schemas, each added to Fastify once under the name the OpenAPI document shows:
 * `Issue` is the lifecycle event's `issue` (the read model's row, as `shoal.lifecycle.v1` carries
 * it), `Problem` every error body.
 */
export function addSharedSchemas(app: FastifyInstance): void {
  app.addSchema({ ...eventField('issue'), $id: 'Issue' });
  app.addSchema({
    $id: 'Outcome',
    description: "A command's outcome as the decide consumer recorded it",
    type: 'object',
    required: ['command_id', 'issue_id', 'command', 'actor', 'outcome', 'decided_at'],
    properties: {
      command_id: { type: 'string', format: 'uuid' },
      issue_id: { type: 'integer' },
      command: commandField('command'),
      actor: { type: 'string' },
      outcome: { type: 'string', enum: ['applied', 'ignored', 'rejected'] },
      reason: { type: ['string', 'null'] },
      detail: { type: ['string', 'null'] },
      allowed_transitions: { type: ['array', 'null'], items: { type: 'string' } },
      version: { type: ['integer', 'null'] },
      issue: {
        type: ['object', 'null'],
        properties: {
          status: eventField('status'),
          version: { type: 'integer' },
          claimed_by: { type: ['string', 'null'] },
          claim_expires_at: { type: ['string', 'null'], format: 'date-time' },
        },
      },
      decided_at: { type: 'string', format: 'date-time' },
    },
  });
  app.addSchema({
    $id: 'Problem',
    type: 'object',
    required: ['error', 'message'],
    properties: {
      error: { type: 'string' },
      message: { type: 'string' },
      problems: {
        description:
          'Every bad field of the failing request part, by path (`/body/…`, `/query/…`, `/headers/…`)',
        type: 'array',
        items: {
          type: 'object',
          required: ['path', 'message'],
          properties: { path: { type: 'string' }, message: { type: 'string' } },
        },
      },
      issue: {
        description: '409: the issue as it is (status, version, holder, lease end)',
        type: 'object',
        properties: {
          status: eventField('status'),
          version: { type: 'integer' },
          claimed_by: { type: ['string', 'null'] },
          claim_expires_at: { type: ['string', 'null'], format: 'date-time' },
        },
      },
      allowed_transitions: {
        description: '409: the moves this token may make now',
        type: 'array',
        items: { type: 'string' },
      },
      current_version: { description: '412: the issue version now', type: 'integer' },
      command_id: {
        description: '503: the command id a retry should send as Idempotency-Key',
        type: 'string',
        format: 'uuid',
      },
    },
  });
}

/** `@fastify/swagger`, writing `/openapi.json` from the routes' schemas (tagged routes only). */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Shoal agent API',
        version: '1',
        description:
          'Agents claim, move, resolve and annotate issues. Every change is a command on shoal.lifecycle-commands.v1 that the lifecycle service decides; a reply waits for its outcome (Prefer: wait=N, default 5 s, at most 30) and otherwise answers 202 with Location: /v1/commands/{id}.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    hideUntagged: true,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
  });
}
