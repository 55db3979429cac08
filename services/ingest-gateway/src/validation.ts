import { compileJsonSchema, fieldProblems, problemsOf } from '@shoal/contracts';
import type { FastifySchemaCompiler } from 'fastify';
import { HttpProblem } from './problem.js';

/** Which topic a route publishes to (an item of `/v1/occurrences` may go to the other one). */
export type Kind = 'occurrences' | 'statusChanges';

/** Each item's topic: Sentry's single stream mixes both payload types, so /v1/occurrences routes by it. */
export function kindOf(route: Kind, item: unknown): Kind {
  const payloadType = (item as { payload_type?: unknown } | null)?.payload_type;
  return route === 'occurrences' && payloadType === 'status_change' ? 'statusChanges' : route;
}

/** The problem with a body of one item or an array of items, or undefined when every item is valid. */
function bodyProblem(route: Kind, body: unknown, maxItems: number): HttpProblem | undefined {
  const items = Array.isArray(body) ? body : [body];
  if (items.length === 0) return new HttpProblem(400, 'invalid_payload', 'the array is empty');
  if (items.length > maxItems) {
    return new HttpProblem(
      413,
      'too_many_items',
      `${items.length} items; at most ${maxItems} per request`,
    );
  }
  // all or nothing: every item is checked, and one bad item refuses the request
  const problems = items.flatMap((item, index) =>
    problemsOf(kindOf(route, item), item).map((p) => ({ index, ...p })),
  );
  if (problems.length === 0) return undefined;
  const invalidItems = new Set(problems.map((p) => p.index)).size;
  return new HttpProblem(
    400,
    'invalid_payload',
    `${invalidItems} of ${items.length} items are invalid; nothing was published`,
    problems,
  );
}

/**
 * The ingest routes' validator compiler: Fastify validates each request with the contracts
 * validator (packages/contracts: the topic schemas in `schemas/`, problems named by field path),
 * the same schemas the route declares for its OpenAPI document. The body is checked item by item
 * with the schema of the item's topic; headers with their declared schema (Ajv, as contracts
 * compiles it).
 */
export function contractValidation(route: Kind, maxItems: number): FastifySchemaCompiler<unknown> {
  return ({ httpPart, schema }) => {
    if (httpPart === 'body') {
      return (body: unknown) => {
        const problem = bodyProblem(route, body, maxItems);
        return problem ? { error: problem } : true;
      };
    }
    if (httpPart === 'headers') {
      const validate = compileJsonSchema(schema as object);
      return (headers: unknown) => {
        if (validate(headers)) return true;
        const problems = fieldProblems(validate.errors);
        const names = problems.map((p) => p.path.slice(1)).join(', ');
        return {
          error: new HttpProblem(400, 'invalid_header', `invalid header ${names}`, problems),
        };
      };
    }
    throw new Error(`no contract validation for the ${httpPart} of ${route}`);
  };
}
