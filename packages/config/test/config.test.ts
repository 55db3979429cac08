import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  connectionConfig,
  env,
  errorTrackerLine,
  loadConfig,
  z,
} from '../src/index.js';

describe('loadConfig', () => {
  it('gives the local stack defaults when nothing is set', () => {
    expect(connectionConfig({})).toEqual({
      KAFKA_BROKERS: ['127.0.0.1:9092'],
      SCHEMA_REGISTRY_URL: 'http://127.0.0.1:8081/apis/ccompat/v7',
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/shoal',
    });
  });

  it('parses what is set', () => {
    const config = connectionConfig({
      KAFKA_BROKERS: 'a:1, b:2',
      DATABASE_URL: 'postgresql://u@db:6543/x',
    });
    expect(config.KAFKA_BROKERS).toEqual(['a:1', 'b:2']);
    expect(config.DATABASE_URL).toBe('postgresql://u@db:6543/x');
  });

  it('names every bad variable, what it expected and what it got', () => {
    let error: unknown;
    try {
      connectionConfig({
        KAFKA_BROKERS: 'localhost',
        SCHEMA_REGISTRY_URL: 'ftp://x',
        DATABASE_URL: 'mysql://x',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain(
      'KAFKA_BROKERS: expected a comma-separated list of host:port (got "localhost")',
    );
    expect(message).toContain('SCHEMA_REGISTRY_URL: expected a http or https URL (got "ftp://x")');
    expect(message).toContain(
      'DATABASE_URL: expected a postgres or postgresql URL (got "mysql://x")',
    );
    expect((error as ConfigError).problems.map((p) => p.variable)).toEqual([
      'KAFKA_BROKERS',
      'SCHEMA_REGISTRY_URL',
      'DATABASE_URL',
    ]);
  });

  it('never echoes a password or a secret variable', () => {
    const shown = (variable: string, value: string) => {
      try {
        loadConfig({ [variable]: env.url(['postgres']) }, { [variable]: value });
      } catch (e) {
        return (e as ConfigError).message + JSON.stringify((e as ConfigError).problems);
      }
      throw new Error('expected a ConfigError');
    };
    // not URLs, so nothing could have parsed the password out
    expect(shown('DATABASE_URL', 'postgres//shoal:s3cret@db/x')).toContain(
      '(got "postgres//shoal:***@db/x")',
    );
    expect(shown('DATABASE_URL', 'shoal:s3:cr/et@db:5432')).toContain('(got "shoal:***@db:5432")');
    expect(shown('DATABASE_URL', 'mysql://:s3cret@db/x')).toContain('(got "mysql://:***@db/x")');
    expect(shown('SHOAL_INGEST_TOKENS', 'a=s3cret')).toContain(
      'SHOAL_INGEST_TOKENS: expected a postgres URL (got (hidden, 8 characters))',
    );
    for (const variable of ['DATABASE_URL', 'SHOAL_INGEST_TOKENS'])
      expect(shown(variable, 'mysql://u:s3cret@h')).not.toContain('s3cret');
    // nothing else is masked
    expect(shown('DATABASE_URL', 'http://db:5432/x')).toContain('(got "http://db:5432/x")');
  });

  it('reports a missing required variable as missing', () => {
    expect(() => loadConfig({ SHOAL_TOKEN: z.string({ error: 'expected a token' }) }, {})).toThrow(
      'SHOAL_TOKEN: expected a token (got nothing)',
    );
  });

  it('treats an empty variable as unset and validates ports', () => {
    expect(loadConfig({ PORT: env.port().default(8080) }, { PORT: '' })).toEqual({ PORT: 8080 });
    expect(() => loadConfig({ PORT: env.port() }, { PORT: '70000' })).toThrow(
      'PORT: expected a TCP port (1-65535) (got "70000")',
    );
  });
});

describe('errorTrackerLine', () => {
  it('says how the tracker stands without showing the DSN', () => {
    expect(errorTrackerLine(undefined).status).toBe('not configured');
    expect(errorTrackerLine(' ').status).toBe('not configured');
    expect(errorTrackerLine('off')).toEqual({
      status: 'off',
      detail: 'SHOAL_ERROR_TRACKER_DSN=off',
    });
    expect(errorTrackerLine('key-without-scheme@host/1')).toEqual({
      status: 'down',
      detail: 'SHOAL_ERROR_TRACKER_DSN is not a DSN (a URL)',
    });
    const set = errorTrackerLine('https://s3cret-key@o1.ingest.example/42');
    expect(set.status).toBe('configured');
    expect(set.detail).toContain('o1.ingest.example');
    expect(set.detail).not.toContain('s3cret-key');
  });
});
