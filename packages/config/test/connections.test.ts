import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { kafkaConnection, registryConnection } from '../src/connections.js';
import { combinedConfig, ConfigError, connectionConfig, loadConfig, z } from '../src/index.js';

const failure = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-config-'));
const caFile = path.join(dir, 'ca.pem');
fs.writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

describe('Kafka TLS and SASL', () => {
  it('PLAINTEXT by default: brokers only, as the local stack needs', () => {
    expect(kafkaConnection({})).toEqual({ brokers: ['127.0.0.1:9092'] });
  });

  it('SASL_SSL with SCRAM and a CA file gives kafkajs its ssl and sasl options', () => {
    expect(
      kafkaConnection({
        KAFKA_BROKERS: 'b-1.kafka:9096',
        KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
        KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
        KAFKA_SASL_USERNAME: 'shoal',
        KAFKA_SASL_PASSWORD: 'pa55word',
        KAFKA_TLS_CA_FILE: caFile,
      }),
    ).toEqual({
      brokers: ['b-1.kafka:9096'],
      ssl: { ca: [fs.readFileSync(caFile, 'utf8')] },
      sasl: { mechanism: 'scram-sha-512', username: 'shoal', password: 'pa55word' },
    });
    expect(kafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SSL' }).ssl).toBe(true);
    expect(
      kafkaConnection({
        KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT',
        KAFKA_SASL_MECHANISM: 'PLAIN',
        KAFKA_SASL_USERNAME: 'u',
        KAFKA_SASL_PASSWORD: 'p',
      }),
    ).toEqual({
      brokers: ['127.0.0.1:9092'],
      sasl: { mechanism: 'plain', username: 'u', password: 'p' },
    });
  });

  it('names what SASL lacks, a mechanism it does not know, a CA file that is not there; never the password', () => {
    const lacking = failure(() =>
      kafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_PASSWORD: 'pa55word' }),
    );
    expect(lacking).toContain('KAFKA_SASL_MECHANISM: one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512');
    expect(lacking).toContain(
      'KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL=SASL_SSL',
    );
    expect(lacking).not.toContain('KAFKA_SASL_PASSWORD');

    const bad = failure(() =>
      kafkaConnection({
        KAFKA_SECURITY_PROTOCOL: 'SASL',
        KAFKA_SASL_MECHANISM: 'GSSAPI',
        KAFKA_SASL_PASSWORD: 'pa55word',
        KAFKA_TLS_CA_FILE: path.join(dir, 'missing.pem'),
      }),
    );
    expect(bad).toContain(
      'KAFKA_SECURITY_PROTOCOL: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (got "SASL")',
    );
    expect(bad).toContain(
      'KAFKA_SASL_MECHANISM: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512',
    );
    expect(bad).toContain('KAFKA_TLS_CA_FILE: expected a readable PEM file');
    expect(bad).not.toContain('pa55word');

    expect(failure(() => kafkaConnection({ KAFKA_TLS_CA_FILE: caFile }))).toContain(
      'KAFKA_TLS_CA_FILE: unset, or KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL (it is PLAINTEXT)',
    );
  });
});

describe('registry basic auth', () => {
  it('both variables or neither', () => {
    expect(registryConnection({})).toEqual({ url: 'http://127.0.0.1:8081/apis/ccompat/v7' });
    expect(
      registryConnection({
        SCHEMA_REGISTRY_URL: 'https://registry.example.com',
        SCHEMA_REGISTRY_USERNAME: 'shoal',
        SCHEMA_REGISTRY_PASSWORD: 's3cret',
      }),
    ).toEqual({
      url: 'https://registry.example.com',
      auth: { username: 'shoal', password: 's3cret' },
    });
    const half = failure(() => registryConnection({ SCHEMA_REGISTRY_PASSWORD: 's3cret' }));
    expect(half).toContain('SCHEMA_REGISTRY_USERNAME: set together with the other');
    expect(half).not.toContain('s3cret');
  });
});

describe('PostgreSQL TLS and secrets in errors', () => {
  it('DATABASE_URL: sslmode and certificate files are checked; the password is never shown', () => {
    expect(
      connectionConfig({
        DATABASE_URL: `postgres://shoal:pa55word@db:5432/shoal?sslmode=verify-full&sslrootcert=${caFile}`,
      }).DATABASE_URL,
    ).toContain('sslmode=verify-full');
    const message = failure(() =>
      connectionConfig({
        DATABASE_URL: `postgres://shoal:pa55word@db:5432/shoal?sslmode=strict&sslrootcert=${dir}/none.pem`,
      }),
    );
    expect(message).toContain(
      'DATABASE_URL: expected sslmode to be one of disable, prefer, require, no-verify, verify-ca, verify-full',
    );
    expect(message).toContain(
      `DATABASE_URL: expected sslrootcert to name a readable file (${dir}/none.pem)`,
    );
    expect(message).toContain('postgres://shoal:***@db:5432/shoal');
    expect(message).not.toContain('pa55word');
  });

  it('a bad value of a secret variable is named, its value hidden', () => {
    const message = failure(() =>
      registryConnection({
        SCHEMA_REGISTRY_URL: 'ftp://u:pa55word@x',
        SCHEMA_REGISTRY_PASSWORD: 'x',
      }),
    );
    expect(message).toContain(
      'SCHEMA_REGISTRY_URL: expected a http or https URL (got "ftp://u:***@x")',
    );
    expect(message).not.toContain('pa55word');
  });
});

it('a secret variable that is bad is named, its value never shown', () => {
  const message = failure(() =>
    loadConfig(
      { KAFKA_SASL_PASSWORD: z.string().min(12, { error: 'expected 12 characters or more' }) },
      {
        KAFKA_SASL_PASSWORD: 'pa55word',
      },
    ),
  );
  expect(message).toBe(
    'Invalid configuration:\n  KAFKA_SASL_PASSWORD: expected 12 characters or more (got (hidden, 8 characters))',
  );
});

it('combinedConfig reports the problems of every parser at once', () => {
  const message = failure(() =>
    combinedConfig({
      kafka: () => kafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL' }),
      registry: () => registryConnection({ SCHEMA_REGISTRY_URL: 'nope' }),
      ok: () => 1,
    }),
  );
  expect(message).toContain('KAFKA_SASL_USERNAME: required');
  expect(message).toContain('SCHEMA_REGISTRY_URL: expected a http or https URL');
  expect(combinedConfig({ a: () => 1, b: () => 'x' })).toEqual({ a: 1, b: 'x' });
});

it('combinedConfig shows each value as its own parser did: a secret hidden, a password masked, neither twice', () => {
  const message = failure(() =>
    combinedConfig({
      secret: () =>
        loadConfig(
          { KAFKA_SASL_PASSWORD: z.string().min(12, { error: 'expected 12 characters or more' }) },
          { KAFKA_SASL_PASSWORD: 'pa55word' },
        ),
      registry: () => registryConnection({ SCHEMA_REGISTRY_URL: 'ftp://u:pa55word@x' }),
      missing: () => loadConfig({ DATABASE_URL: z.string({ error: 'required' }) }, {}),
    }),
  );
  expect(message).toBe(
    [
      'Invalid configuration:',
      '  KAFKA_SASL_PASSWORD: expected 12 characters or more (got (hidden, 8 characters))',
      '  SCHEMA_REGISTRY_URL: expected a http or https URL (got "ftp://u:***@x")',
      '  DATABASE_URL: required (got nothing)',
    ].join('\n'),
  );
});
