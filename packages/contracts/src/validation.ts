import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { z } from 'zod';
import { ContractError, type FieldProblem } from './errors.js';
import { loadSchema, topicKeys, type TopicKey } from './topics.js';
import type { MessageTypes } from './messages.js';

// ajv-formats is CommonJS with a default export
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/**
 * One Ajv instance per compiled schema: the registry's schema versions of one subject share an
 * `$id`, which a single Ajv instance refuses to hold twice.
 */
export function compileJsonSchema(schema: object): ValidateFunction {
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv.compile(schema);
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
