import { compileJsonSchema, fieldProblems } from '@shoal/contracts';
import type { FastifySchemaCompiler } from 'fastify';
import { badRequest } from './errors.js';

type PropertySchema = { type?: string | string[]; items?: PropertySchema };

/**
 * Query strings, path parameters and headers arrive as text (a repeated query parameter as an
 * array): each declared integer, boolean or array property is turned into what its schema says
 * before validation, so `?status=new&status=triaged&claimable=true` validates as the schema reads.
 * What does not convert is left as it came and fails validation, named.
 */
function coerce(schema: { properties?: Record<string, PropertySchema> }, value: unknown): void {
  if (value === null || typeof value !== 'object') return;
  const record = value as Record<string, unknown>;
  const scalar = (type: PropertySchema['type'], text: unknown): unknown => {
    if (typeof text !== 'string') return text;
    const types = Array.isArray(type) ? type : [type];
    if (types.includes('integer') && /^-?\d+$/.test(text)) return Number(text);
    if (types.includes('boolean') && (text === 'true' || text === 'false')) return text === 'true';
    return text;
  };
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    if (!(name in record)) continue;
    if (property.type === 'array') {
      const items = Array.isArray(record[name]) ? (record[name] as unknown[]) : [record[name]];
      record[name] = items.map((item) => scalar(property.items?.type, item));
    } else record[name] = scalar(property.type, record[name]);
  }
}

/**
 * The agent API's validator compiler: every part of a request checked against the schema its route
 * declares (the same schemas its OpenAPI document shows, built from `schemas/`), with every
 * problem of that part named by path (`/body/…`, `/query/…`, `/params/…`, `/headers/…`). Bodies are
 * taken as sent (no coercion: `"60"` is not a number); integers beyond 2^53 − 1 are refused, as
 * everywhere in Shoal. A request without a body is validated as `{}`.
 */
export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const validate = compileJsonSchema(schema as object);
  const part = httpPart === 'querystring' ? 'query' : (httpPart ?? 'body');
  return (given: unknown) => {
    // no body at all (a bare `POST …/claim`) is an empty object: its defaults apply, its required fields are named
    const value = part === 'body' && given === null ? {} : given;
    if (part !== 'body') coerce(schema as never, value);
    if (validate(value)) return { value };
    const problems = fieldProblems(validate.errors).map((p) => ({
      ...p,
      path: `/${part}${p.path}`,
    }));
    return { error: badRequest(problems) };
  };
};
