import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connectionConfig } from '@shoal/config';
import {
  createRegistry,
  createTopics,
  createWithLeaders,
  planTopics,
  registerSchemas,
  topicNames,
  withAdmin as withKafkaAdmin,
  type TopicKey,
} from '@shoal/contracts';
import { createPool, migrate, type Pool } from '@shoal/db';
import { Kafka, logLevel, type Admin, type ITopicConfig } from 'kafkajs';
import pg from 'pg';

export const connections = () => connectionConfig();

export const uniqueName = (prefix: string) => `${prefix}${randomBytes(4).toString('hex')}`;

export function kafka(clientId = uniqueName('test-')): Kafka {
  return new Kafka({ brokers: connections().KAFKA_BROKERS, clientId, logLevel: logLevel.NOTHING });
}

export const withAdmin = <T>(fn: (admin: Admin) => Promise<T>): Promise<T> =>
  withKafkaAdmin(connections().KAFKA_BROKERS, fn);

export interface IsolatedTopics {
  namespace: string;
  topics: Record<TopicKey, string>;
  /** Deletes this namespace's topics (and their DLQs). */
  drop(): Promise<void>;
}

/**
 * Runs `create` (idempotent topic creation) up to three times while it fails with a retriable
 * error: a loaded broker can take longer than one attempt allows to elect the new topics' leaders.
 */
async function createTopicsOnLoadedBroker(
  onBroker: <T>(fn: (admin: Admin) => Promise<T>) => Promise<T>,
  create: (admin: Admin) => Promise<unknown>,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await onBroker(create);
      return;
    } catch (error) {
      if ((error as { retriable?: boolean }).retriable !== true || attempt === 3) throw error;
    }
  }
}

/**
 * Creates `topics` on the broker `KAFKA_BROKERS` names now and returns once every partition's leader
 * serves it. A test's own topics go through here, never through a bare `admin.createTopics`: that
 * gives up when the broker still says it does not host a topic it just created.
 */
export const createTestTopics = (topics: ITopicConfig[]): Promise<void> =>
  createTopicsOnLoadedBroker(withAdmin, (admin) => createWithLeaders(admin, topics));

/**
 * A namespace of its own for one test file: every Shoal topic and DLQ created under a random
 * prefix (on the shared broker unless `brokers` names another, e.g. a `privateBroker`) and,
 * unless told otherwise, every schema registered under the prefixed subjects.
 */
export async function isolatedTopics(
  options: {
    partitions?: Partial<Record<TopicKey, number>>;
    register?: boolean;
    brokers?: string[];
  } = {},
): Promise<IsolatedTopics> {
  const namespace = `${uniqueName('t')}.`;
  const topics = topicNames(namespace);
  const plan = planTopics(topics, options.partitions ?? {});
  const onBroker = <T>(fn: (admin: Admin) => Promise<T>) =>
    withKafkaAdmin(options.brokers ?? connections().KAFKA_BROKERS, fn);
  await createTopicsOnLoadedBroker(onBroker, (admin) => createTopics(admin, plan));
  if (options.register !== false)
    await registerSchemas(createRegistry(connections().SCHEMA_REGISTRY_URL), topics);
  return {
    namespace,
    topics,
    drop: () => onBroker((admin) => admin.deleteTopics({ topics: plan.map((p) => p.topic) })),
  };
}

export interface IsolatedDatabase {
  name: string;
  url: string;
  pool: Pool;
  drop(): Promise<void>;
}

async function adminQuery(sql: string): Promise<void> {
  const url = new URL(connections().DATABASE_URL);
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * A database of its own for one test file, with the runtime's migrations (or `dirs`) applied unless
 * told otherwise; with `schema` (a service's), migrated into that schema and its pool's `search_path`.
 */
export async function isolatedDatabase(
  options: { migrate?: boolean; dirs?: string[]; schema?: string } = {},
): Promise<IsolatedDatabase> {
  const name = uniqueName('shoal_test_');
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(connections().DATABASE_URL);
  url.pathname = `/${name}`;
  if (options.migrate !== false)
    await migrate({
      databaseUrl: url.toString(),
      direction: 'up',
      dirs: options.dirs,
      schema: options.schema,
    });
  const pool = createPool(url.toString(), {
    applicationName: 'shoal-test',
    schema: options.schema,
  });
  return {
    name,
    url: url.toString(),
    pool,
    drop: async () => {
      await pool.end();
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

export const repoRoot = new URL('../../../', import.meta.url).pathname;

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The command line of one of the repository's TypeScript entry points, as `npm run <x>` runs it. */
const entryPointArgs = (script: string, args: string[]) => [
  '--import',
  'tsx',
  '--conditions=shoal-source',
  script,
  ...args,
];

/** Runs one of the repository's TypeScript entry points as `npm run <x>` would, and captures it. */
export function runEntryPoint(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 300_000,
): CommandResult {
  const result = spawnSync(process.execPath, entryPointArgs(script, args), {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `runEntryPoint` without blocking this process, so a test can run several side by side. */
export function runEntryPointAsync(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 300_000,
): Promise<CommandResult> {
  const child = spawn(process.execPath, entryPointArgs(script, args), {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  });
  const result = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => (result.stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (result.stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, ...result }));
  });
}

export interface RunningEntryPoint {
  child: ChildProcess;
  /** Every line it printed, stdout and stderr. */
  output: string[];
  /** Resolves when it prints a line containing `readyWhen`. */
  ready: Promise<void>;
  exited: Promise<number | null>;
}

/** Starts one of the repository's TypeScript entry points as a child process (what kill tests SIGKILL). */
export function spawnEntryPoint(
  script: string,
  env: NodeJS.ProcessEnv,
  readyWhen: string,
  args: string[] = [],
): RunningEntryPoint {
  const child = spawn(process.execPath, entryPointArgs(script, args), {
    cwd: repoRoot,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      output.push(line);
      if (line.includes(readyWhen)) onReady();
    }
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output, ready, exited };
}

/** Polls `check` every 200 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
export * from './extremes.js';
export * from './private-broker.js';

export interface TopicRecord {
  key: string | null;
  /** The key's bytes as they are (`key` is them read as UTF-8). */
  keyBytes: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
  partition: number;
  offset: string;
  timestamp: string;
}

/** Every record on `topic` right now (reads up to the high watermarks, then stops). */
export async function readAll(topic: string): Promise<TopicRecord[]> {
  const offsets = await withAdmin((admin) => admin.fetchTopicOffsets(topic));
  const expected = offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  const records: TopicRecord[] = [];
  if (expected === 0) return records;
  const consumer = kafka().consumer({ groupId: uniqueName('read-') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`read ${records.length} of ${expected} records of ${topic}`)),
      60_000,
    );
    void consumer.run({
      eachMessage: async ({ partition, message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {}))
          if (v !== undefined) headers[k] = v.toString();
        records.push({
          key: message.key?.toString() ?? null,
          keyBytes: message.key,
          value: message.value,
          headers,
          partition,
          offset: message.offset,
          timestamp: message.timestamp,
        });
        if (records.length >= expected) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return records;
}
