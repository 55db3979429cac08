import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaults, env, loadConfig, z, type Env } from '@shoal/config';

export const stackDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(stackDir, '../..');

export const KAFKA_VERSION = '4.1.1';
export const REGISTRY_PRIMARY = { version: '3.3.3', minJava: 21 } as const;
export const REGISTRY_FALLBACK = { version: '2.6.13.Final', minJava: 17 } as const;

const stackEnv = {
  SHOAL_STACK_HOME: z.string().default(path.join(repoRoot, '.cache', 'stack')),
  SHOAL_KAFKA_PORT: env.port().default(9092),
  SHOAL_KAFKA_CONTROLLER_PORT: env.port().default(9093),
  SHOAL_REGISTRY_PORT: env.port().default(8081),
  SHOAL_REGISTRY_MANAGEMENT_PORT: env.port().default(9001),
  /** `mem` keeps schemas in the registry's process (tests); `sql` keeps them in PostgreSQL. */
  SHOAL_REGISTRY_STORAGE: env.oneOf(['mem', 'sql']).default('mem'),
  SHOAL_START_TIMEOUT_SECONDS: env.positiveInt().default(120),
  DATABASE_URL: env.url(['postgres', 'postgresql']).default(defaults.databaseUrl),
};

export type StackSettings = ReturnType<typeof stackSettings>;

export function stackSettings(source: Env = process.env) {
  const c = loadConfig(stackEnv, source);
  const home = path.resolve(c.SHOAL_STACK_HOME);
  const db = new URL(c.DATABASE_URL);
  return {
    home,
    kafka: {
      port: c.SHOAL_KAFKA_PORT,
      controllerPort: c.SHOAL_KAFKA_CONTROLLER_PORT,
      brokers: [`127.0.0.1:${c.SHOAL_KAFKA_PORT}`],
      dir: path.join(home, 'kafka'),
    },
    registry: {
      port: c.SHOAL_REGISTRY_PORT,
      managementPort: c.SHOAL_REGISTRY_MANAGEMENT_PORT,
      storage: c.SHOAL_REGISTRY_STORAGE,
      url: `http://127.0.0.1:${c.SHOAL_REGISTRY_PORT}/apis/ccompat/v7`,
      dir: path.join(home, 'registry'),
    },
    postgres: {
      url: c.DATABASE_URL,
      host: db.hostname,
      port: Number(db.port || 5432),
      database: decodeURIComponent(db.pathname.replace(/^\//, '')) || 'postgres',
      dir: path.join(home, 'postgres'),
    },
    startTimeoutMs: c.SHOAL_START_TIMEOUT_SECONDS * 1000,
  };
}
