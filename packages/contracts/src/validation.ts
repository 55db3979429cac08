import { createRequire } from 'node:module';
import type * as AjvModule from 'ajv';
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';
import { z } from 'zod';
import { ContractError, type FieldProblem } from './errors.js';
import { loadSchema, topicKeys, type TopicKey } from './topics.js';
import type { MessageTypes } from './messages.js';

// Ajv and ajv-formats (CommonJS, ~100 modules) are loaded at the first compile rather than with
// this package: most of its importers (the shoal bin's commands, tests) never compile a schema.
const require = createRequire(import.meta.url);
const newAjv = (): Ajv => {
  const { Ajv } = require('ajv') as typeof AjvModule;
  const addFormats = (require('ajv-formats') as { default: (ajv: Ajv) => Ajv }).default;
  return addFormats(new Ajv({ allErrors: true, strict: false }));
};

/**
 * The keyword `withSafeIntegers` adds wherever a schema says `type: integer`. JSON allows integers of
 * any size and the schemas set no maximum (narrowing them would break BACKWARD compatibility), but
 * JavaScript holds integers exactly only up to 2^53 − 1: `JSON.parse` has already rounded a larger
 * one, so it is refused, naming the field, rather than stored as another number.
 */
export const SAFE_INTEGER_KEYWORD = 'x-shoal-safe-integer';
const SAFE_INTEGER_MESSAGE = `must be an integer between -${Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER} (JavaScript cannot hold a larger one exactly)`;

function isIntegerTyped(schema: Record<string, unknown>): boolean {
  const { type } = schema;
  return type === 'integer' || (Array.isArray(type) && type.includes('integer'));
}

/** A copy of `schema` with the safe-integer keyword at every integer-typed location. */
export function withSafeIntegers<S>(schema: S): S {
  if (Array.isArray(schema)) return schema.map((s: unknown) => withSafeIntegers(s)) as S;
  if (!schema || typeof schema !== 'object') return schema;
  const copy = Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [
      k,
      k === 'enum' || k === 'const' ? v : withSafeIntegers(v),
    ]),
  );
  if (isIntegerTyped(copy)) copy[SAFE_INTEGER_KEYWORD] = true;
  return copy as S;
}

/** Teaches an Ajv instance the safe-integer keyword (for one that compiles `withSafeIntegers` schemas). */
export function addSafeIntegerKeyword(ajv: Ajv): Ajv {
  return ajv.addKeyword({
    keyword: SAFE_INTEGER_KEYWORD,
    type: 'number',
    schemaType: 'boolean',
    error: { message: SAFE_INTEGER_MESSAGE },
    validate: (on: boolean, data: number) =>
      !on || !Number.isInteger(data) || Number.isSafeInteger(data),
  });
}

/**
 * One Ajv instance per compiled schema: the registry's schema versions of one subject share an
 * `$id`, which a single Ajv instance refuses to hold twice. Every schema, local or fetched from the
 * registry, is compiled with the safe-integer rule.
 */
export function compileJsonSchema(schema: object): ValidateFunction {
  const ajv = newAjv();
  addSafeIntegerKeyword(ajv);
  return ajv.compile(withSafeIntegers(schema));
}

/** Ajv's errors as field problems; a missing or unexpected property is named in the path itself. */
export function fieldProblems(errors: ErrorObject[] | null | undefined): FieldProblem[] {
  const problems = (errors ?? []).map((e): FieldProblem => {
    const params = e.params as { missingProperty?: string; additionalProperty?: string };
    const child = params.missingProperty ?? params.additionalProperty;
    return {
      path: child ? `${e.instancePath}/${child}` : e.instancePath,
      message: e.message ?? 'invalid',
    };
  });
  return problems.filter(
    (p, i) => problems.findIndex((q) => q.path === p.path && q.message === p.message) === i,
  );
}

const localValidators = new Map<TopicKey, ValidateFunction>();
function localValidator(key: TopicKey): ValidateFunction {
  let validate = localValidators.get(key);
  if (!validate) {
    validate = compileJsonSchema(loadSchema(key));
    localValidators.set(key, validate);
  }
  return validate;
}

/** Problems of `value` against the topic's schema in `schemas/` (empty when valid). */
export function problemsOf(key: TopicKey, value: unknown): FieldProblem[] {
  const validate = localValidator(key);
  return validate(value) ? [] : fieldProblems(validate.errors);
}

export function assertValid<K extends TopicKey>(key: K, value: unknown): MessageTypes[K] {
  const problems = problemsOf(key, value);
  if (problems.length)
    throw new ContractError('schema_invalid', `invalid ${key} payload`, problems);
  return value as MessageTypes[K];
}

/**
 * zod validators built from `schemas/` at load time (so they cannot drift from it). zod's
 * JSON Schema import does not express every keyword (e.g. an object-level `anyOf` of required
 * sets), so each validator also runs the schema itself through Ajv and reports its problems as
 * zod issues with the same paths.
 */
function zodValidator<K extends TopicKey>(key: K): z.ZodType<MessageTypes[K]> {
  const structural = z.fromJSONSchema(loadSchema(key) as Parameters<typeof z.fromJSONSchema>[0]);
  return structural.superRefine((value, ctx) => {
    for (const problem of problemsOf(key, value)) {
      ctx.addIssue({
        code: 'custom',
        message: problem.message,
        path: problem.path
          .split('/')
          .slice(1)
          .map((s) => (/^\d+$/.test(s) ? Number(s) : s)),
      });
    }
  }) as unknown as z.ZodType<MessageTypes[K]>;
}

export const validators = Object.fromEntries(topicKeys.map((k) => [k, zodValidator(k)])) as {
  [K in TopicKey]: z.ZodType<MessageTypes[K]>;
};
