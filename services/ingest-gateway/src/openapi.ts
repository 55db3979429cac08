import { loadSchema, topicCatalog } from '@shoal/contracts';

const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** OpenAPI 3.1 from the same JSON Schemas the topics are registered with (no second copy of a schema). */
export function openApiDocument(maxItems: number) {
  const component = (key: 'occurrences' | 'statusChanges') => {
    const { $schema: _s, $id: _i, ...schema } = loadSchema(key);
    return schema;
  };
  const problem = {
    type: 'object',
    required: ['error', 'message'],
    properties: {
      error: { type: 'string' },
      message: { type: 'string' },
      problems: {
        type: 'array',
        items: {
          type: 'object',
          required: ['index', 'path', 'message'],
          properties: {
            index: { type: 'integer' },
            path: { type: 'string' },
            message: { type: 'string' },
          },
        },
      },
    },
  };
  const route = (name: string, summary: string) => ({
    post: {
      summary,
      security: [{ bearer: ['ingest'] }],
      requestBody: {
        required: true,
        content: {
          'application/json': {
            schema: {
              oneOf: [
                schemaRef(name),
                { type: 'array', minItems: 1, maxItems, items: schemaRef(name) },
              ],
            },
          },
        },
      },
      responses: {
        202: {
          description: 'Every message acknowledged by the broker (acks=all)',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: {
                  accepted: { type: 'integer' },
                  ids: { type: 'array', items: { type: ['string', 'null'] } },
                },
              },
            },
          },
        },
        400: {
          description: 'Invalid JSON or payload; every bad field named; nothing was published',
          content: { 'application/json': { schema: schemaRef('Problem') } },
        },
        401: { description: 'Missing or unknown token' },
        403: { description: 'The token lacks the ingest scope' },
        413: { description: `Body larger than the limit, or more than ${maxItems} items` },
        415: { description: 'Content type is not application/json' },
        503: {
          description:
            'The broker is unavailable; retry after the Retry-After seconds (ids make retries safe)',
        },
      },
    },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'Shoal ingest gateway', version: '1' },
    paths: {
      '/v1/occurrences': route(
        topicCatalog.occurrences.type,
        'Publish occurrences (Sentry issue-platform payloads accepted unchanged; payload_type "status_change" items go to status changes)',
      ),
      '/v1/status-changes': route(
        topicCatalog.statusChanges.type,
        'Publish status changes (resolve / ignore / unresolve by fingerprint)',
      ),
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Occurrence: component('occurrences'),
        StatusChange: component('statusChanges'),
        Problem: problem,
      },
    },
  };
}
