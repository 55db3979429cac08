import fs from 'node:fs';
import { z } from 'zod';

/**
 * Environment variables are parsed once, at start-up, against a zod shape whose keys are the
 * variable names. A bad or missing variable fails with a message naming it and what was expected.
 */
export class ConfigError extends Error {
  /** The problems, each `got` already safe to print (`shownValue`). */
  readonly problems: { variable: string; expected: string; got: string }[];

  /** `alreadyShown`: the problems come from other ConfigErrors (their `got` is shown already). */
  constructor(
    problems: { variable: string; expected: string; got: string | undefined }[],
    { alreadyShown = false } = {},
  ) {
    const shown = problems.map((p) => ({
      ...p,
      got: alreadyShown ? (p.got ?? 'nothing') : shownValue(p.variable, p.got),
    }));
    super(
      'Invalid configuration:\n' +
        shown.map((p) => `  ${p.variable}: ${p.expected} (got ${p.got})`).join('\n'),
    );
    this.name = 'ConfigError';
    this.problems = shown;
  }
}

/** Variables whose whole value is a secret: named for a token, password, secret, key or DSN. */
const secretVariable = /(TOKEN|PASSWORD|SECRET|KEY|DSN)S?$/;

/**
 * A variable's value as an error may print it: a secret variable's not at all, and any other with
 * the password of a `user:password@` masked, even when the value is not a valid URL (a bad
 * DATABASE_URL is exactly when it is echoed).
 */
export function shownValue(variable: string, value: string | undefined): string {
  if (value === undefined) return 'nothing';
  if (secretVariable.test(variable)) return `(hidden, ${value.length} characters)`;
  // the userinfo starts the value or follows `//` (a scheme's `x://` is none); the password runs
  // to the last `@`
  return JSON.stringify(value.replace(/(^|\/\/)([^\s:/@]*):(?!\/\/)\S*@/g, '$1$2:***@'));
}

export type Env = Record<string, string | undefined>;

export function loadConfig<S extends z.ZodRawShape>(
  shape: S,
  env: Env = process.env,
): z.infer<z.ZodObject<S>> {
  const values = Object.fromEntries(
    Object.keys(shape).map((key) => [key, env[key] === '' ? undefined : env[key]]),
  );
  const result = z.object(shape).safeParse(values);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const variable = String(issue.path[0]);
      return { variable, expected: issue.message, got: env[variable] };
    }),
  );
}

/**
 * Runs every parser of a process's configuration and reports all their problems in one
 * ConfigError, not only the first parser's: an operator fixes the environment in one go.
 */
export function combinedConfig<T extends Record<string, () => unknown>>(
  parsers: T,
): { [K in keyof T]: ReturnType<T[K]> } {
  const parsed: Record<string, unknown> = {};
  const problems: ConfigError['problems'] = [];
  for (const [name, parse] of Object.entries(parsers)) {
    try {
      parsed[name] = parse();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length) throw new ConfigError(problems, { alreadyShown: true });
  return parsed as { [K in keyof T]: ReturnType<T[K]> };
}

/** For a process's main: print a configuration problem and exit 78 (EX_CONFIG) instead of a stack trace. */
export function orExitOnConfigError<T>(load: () => T): T {
  try {
    return load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(78);
  }
}

export function loadConfigOrExit<S extends z.ZodRawShape>(
  shape: S,
  env: Env = process.env,
): z.infer<z.ZodObject<S>> {
  return orExitOnConfigError(() => loadConfig(shape, env));
}

const hostPort = /^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/;

export const env = {
  brokers: () =>
    z
      .string({ error: 'expected a comma-separated list of host:port' })
      .transform((s) => s.split(',').map((b) => b.trim()))
      .refine((list) => list.every((b) => hostPort.test(b)), {
        error: 'expected a comma-separated list of host:port',
      }),
  url: (protocols: string[]) =>
    z.string({ error: `expected a ${protocols.join(' or ')} URL` }).refine(
      (s) => {
        try {
          return protocols.includes(new URL(s).protocol.replace(/:$/, ''));
        } catch {
          return false;
        }
      },
      { error: `expected a ${protocols.join(' or ')} URL` },
    ),
  port: () =>
    z.coerce
      .number({ error: 'expected a TCP port (1-65535)' })
      .int({ error: 'expected a TCP port (1-65535)' })
      .min(1, { error: 'expected a TCP port (1-65535)' })
      .max(65535, { error: 'expected a TCP port (1-65535)' }),
  positiveInt: () =>
    z.coerce
      .number({ error: 'expected a positive whole number' })
      .int({ error: 'expected a positive whole number' })
      .positive({ error: 'expected a positive whole number' }),
  oneOf: <T extends string>(values: readonly [T, ...T[]]) =>
    z.enum(values, { error: `expected one of ${values.join(', ')}` }),
};

const sslModes = ['disable', 'prefer', 'require', 'no-verify', 'verify-ca', 'verify-full'] as const;

export const readableFile = (file: string) => {
  try {
    fs.accessSync(file, fs.constants.R_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * DATABASE_URL: a postgres URL; TLS is its own parameters (pg reads them): `sslmode` one pg
 * knows, and `sslrootcert`, `sslcert`, `sslkey` files that exist.
 */
const databaseUrl = () =>
  env.url(['postgres', 'postgresql']).superRefine((value, ctx) => {
    let params: URLSearchParams;
    try {
      params = new URL(value).searchParams;
    } catch {
      return; // not a URL: env.url says so
    }
    const mode = params.get('sslmode');
    if (mode !== null && !(sslModes as readonly string[]).includes(mode))
      ctx.addIssue({
        code: 'custom',
        message: `expected sslmode to be one of ${sslModes.join(', ')}`,
      });
    for (const name of ['sslrootcert', 'sslcert', 'sslkey']) {
      const file = params.get(name);
      if (file !== null && !readableFile(file))
        ctx.addIssue({
          code: 'custom',
          message: `expected ${name} to name a readable file (${file})`,
        });
    }
  });

export const defaults = {
  kafkaBrokers: '127.0.0.1:9092',
  schemaRegistryUrl: 'http://127.0.0.1:8081/apis/ccompat/v7',
  databaseUrl: 'postgres://postgres@127.0.0.1:5432/shoal',
} as const;

/** The three connections every Shoal process needs, with the local stack's defaults. */
export const connectionEnv = {
  KAFKA_BROKERS: env.brokers().default([defaults.kafkaBrokers]),
  SCHEMA_REGISTRY_URL: env.url(['http', 'https']).default(defaults.schemaRegistryUrl),
  DATABASE_URL: databaseUrl().default(defaults.databaseUrl),
};

export type ConnectionConfig = z.infer<z.ZodObject<typeof connectionEnv>>;

export function connectionConfig(source: Env = process.env): ConnectionConfig {
  return loadConfig(connectionEnv, source);
}

export { z };
export * from './error-tracker.js';
