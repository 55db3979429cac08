import fs from 'node:fs';
import { z } from 'zod';
import { ConfigError, connectionEnv, env, loadConfig, readableFile, type Env } from './index.js';

/**
 * Production connections: Kafka over TLS and SASL (PLAIN, SCRAM-SHA-256/512), the schema registry
 * with HTTP basic auth, PostgreSQL over TLS (DATABASE_URL's `sslmode` and certificate files).
 * Parsed at start like every variable (a bad one stops the process, named); secrets come from the
 * environment only and ConfigError never repeats them (index.ts, `shownValue`).
 * Imported as `@shoal/config/connections`.
 */

export const kafkaSecurityEnv = {
  /** Kafka's `security.protocol`. */
  KAFKA_SECURITY_PROTOCOL: env
    .oneOf(['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'])
    .default('PLAINTEXT'),
  KAFKA_SASL_MECHANISM: env.oneOf(['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']).optional(),
  KAFKA_SASL_USERNAME: z.string().optional(),
  KAFKA_SASL_PASSWORD: z.string().optional(),
  /** PEM bundle of the CAs that signed the brokers' certificates (default: Node's own CAs). */
  KAFKA_TLS_CA_FILE: z
    .string()
    .refine(readableFile, { error: 'expected a readable PEM file' })
    .optional(),
};

export const registryAuthEnv = {
  SCHEMA_REGISTRY_USERNAME: z.string().optional(),
  SCHEMA_REGISTRY_PASSWORD: z.string().optional(),
};

type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

/** What kafkajs' `KafkaConfig` takes beyond the brokers (same field names and values). */
export interface KafkaSecurity {
  ssl?: true | { ca: string[] };
  /** One member per mechanism, as kafkajs' SASLOptions has it. */
  sasl?: {
    [M in SaslMechanism]: { mechanism: M; username: string; password: string };
  }[SaslMechanism];
}

export interface KafkaConnection extends KafkaSecurity {
  brokers: string[];
}

export interface RegistryAuth {
  username: string;
  password: string;
}

export interface RegistryConnection {
  url: string;
  auth?: RegistryAuth;
}

const missing = (variable: string, expected: string) => ({ variable, expected, got: undefined });

/** TLS and SASL for Kafka from the environment; throws ConfigError naming each missing or bad variable. */
export function kafkaSecurity(source: Env = process.env): KafkaSecurity {
  const c = loadConfig(kafkaSecurityEnv, source);
  const tls = c.KAFKA_SECURITY_PROTOCOL.endsWith('SSL');
  const usesSasl = c.KAFKA_SECURITY_PROTOCOL.startsWith('SASL_');
  if (usesSasl) {
    const because = `required with KAFKA_SECURITY_PROTOCOL=${c.KAFKA_SECURITY_PROTOCOL}`;
    const problems = [
      ...(c.KAFKA_SASL_MECHANISM
        ? []
        : [
            missing(
              'KAFKA_SASL_MECHANISM',
              `one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ${because}`,
            ),
          ]),
      ...(c.KAFKA_SASL_USERNAME ? [] : [missing('KAFKA_SASL_USERNAME', because)]),
      ...(c.KAFKA_SASL_PASSWORD ? [] : [missing('KAFKA_SASL_PASSWORD', because)]),
    ];
    if (problems.length) throw new ConfigError(problems);
  }
  if (c.KAFKA_TLS_CA_FILE && !tls)
    throw new ConfigError([
      {
        variable: 'KAFKA_TLS_CA_FILE',
        expected: `unset, or KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL (it is ${c.KAFKA_SECURITY_PROTOCOL})`,
        got: c.KAFKA_TLS_CA_FILE,
      },
    ]);
  return {
    ...(tls && {
      ssl: c.KAFKA_TLS_CA_FILE ? { ca: [fs.readFileSync(c.KAFKA_TLS_CA_FILE, 'utf8')] } : true,
    }),
    ...(usesSasl && {
      sasl: {
        mechanism: c.KAFKA_SASL_MECHANISM!.toLowerCase() as
          'plain' | 'scram-sha-256' | 'scram-sha-512',
        username: c.KAFKA_SASL_USERNAME!,
        password: c.KAFKA_SASL_PASSWORD!,
      },
    }),
  };
}

/** HTTP basic auth for the registry: both variables or neither. */
export function registryAuth(source: Env = process.env): RegistryAuth | undefined {
  const c = loadConfig(registryAuthEnv, source);
  if (!c.SCHEMA_REGISTRY_USERNAME && !c.SCHEMA_REGISTRY_PASSWORD) return undefined;
  if (!c.SCHEMA_REGISTRY_USERNAME || !c.SCHEMA_REGISTRY_PASSWORD)
    throw new ConfigError([
      missing(
        c.SCHEMA_REGISTRY_USERNAME ? 'SCHEMA_REGISTRY_PASSWORD' : 'SCHEMA_REGISTRY_USERNAME',
        'set together with the other (registry basic auth), or neither',
      ),
    ]);
  return { username: c.SCHEMA_REGISTRY_USERNAME, password: c.SCHEMA_REGISTRY_PASSWORD };
}

/** Kafka as kafkajs takes it: brokers, TLS, SASL. Throws ConfigError naming each bad variable. */
export function kafkaConnection(source: Env = process.env): KafkaConnection {
  const { KAFKA_BROKERS } = loadConfig({ KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS }, source);
  return { brokers: KAFKA_BROKERS, ...kafkaSecurity(source) };
}

/** The registry's URL and basic auth. Throws ConfigError naming each bad variable. */
export function registryConnection(source: Env = process.env): RegistryConnection {
  const { SCHEMA_REGISTRY_URL } = loadConfig(
    { SCHEMA_REGISTRY_URL: connectionEnv.SCHEMA_REGISTRY_URL },
    source,
  );
  const auth = registryAuth(source);
  return { url: SCHEMA_REGISTRY_URL, ...(auth && { auth }) };
}
