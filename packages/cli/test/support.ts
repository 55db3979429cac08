import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { dlqTopic } from '@shoal/contracts';
import { DLQ_HEADER, HEADER } from '@shoal/kafka-runtime';
import { createTestTopics, kafka, repoRoot, uniqueName, withAdmin } from '@shoal/testing';
import type { IHeaders } from 'kafkajs';

/** The `shoal` bin as operators run it, for the tests: from a script and from a terminal. */

export const bin = path.join(repoRoot, 'node_modules/.bin/shoal');

/** Runners of the bin with `baseEnv()` (read at each run: the test's database) under `env`. */
export function shoalRunners(baseEnv: () => NodeJS.ProcessEnv) {
  /** Runs the bin without a terminal (stdin is a pipe), as a script would. */
  function shoal(args: string[], env: NodeJS.ProcessEnv = {}) {
    const result = spawnSync(bin, args, {
      cwd: repoRoot,
      env: { ...process.env, ...baseEnv(), ...env },
      input: '',
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Runs the bin on a terminal (util-linux `script` gives it a pty) and types `answer`. */
  function shoalOnTerminal(args: string[], answer = '', env: NodeJS.ProcessEnv = {}) {
    const quote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`;
    const result = spawnSync('script', ['-qec', [bin, ...args].map(quote).join(' '), '/dev/null'], {
      cwd: repoRoot,
      env: { ...process.env, ...baseEnv(), ...env },
      input: `${answer}\n`,
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: result.status, output: result.stdout };
  }

  /**
   * Runs the bin without a terminal, as `shoal` does, without blocking this process: for commands
   * that wait on a consumer the test runs in-process.
   */
  function shoalAsync(args: string[], env: NodeJS.ProcessEnv = {}) {
    const child = spawn(bin, args, {
      cwd: repoRoot,
      env: { ...process.env, ...baseEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    const out = { stdout: '', stderr: '' };
    child.stdout.on('data', (chunk: Buffer) => (out.stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out.stderr += chunk.toString()));
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
      child.on('close', (status) => resolve({ status, ...out })),
    );
  }

  /**
   * Runs the bin once per entry of `argsList`, as `shoalAsync` does, as many at once as there are
   * cores (a run is mostly CPU: loading the sources), and answers in the order given: for runs
   * that only read, or are refused, so their order does not matter.
   */
  async function shoalEach<const L extends readonly (readonly string[])[]>(
    argsList: L,
    env: NodeJS.ProcessEnv = {},
  ) {
    type Result = Awaited<ReturnType<typeof shoalAsync>>;
    const results: Result[] = [];
    let next = 0;
    const lane = async () => {
      for (let i = next++; i < argsList.length; i = next++)
        results[i] = await shoalAsync([...argsList[i]!], env);
    };
    await Promise.all(
      Array.from({ length: Math.min(availableParallelism(), argsList.length) }, lane),
    );
    return results as unknown as { -readonly [K in keyof L]: Result };
  }

  return { shoal, shoalAsync, shoalEach, shoalOnTerminal };
}

/** The headers of a readable dead letter of `topic` (a processing_error), with `overrides`. */
export const deadLetterHeaders = (
  topic: string,
  messageId: string,
  overrides: Record<string, string> = {},
): Record<string, string> => ({
  [HEADER.messageId]: messageId,
  [DLQ_HEADER.originalTopic]: topic,
  [DLQ_HEADER.originalPartition]: '0',
  [DLQ_HEADER.originalOffset]: '7',
  [DLQ_HEADER.consumerGroup]: 'g',
  [DLQ_HEADER.reason]: 'processing_error',
  [DLQ_HEADER.attemptCount]: '1',
  [DLQ_HEADER.firstFailedAt]: '2026-11-30T10:00:00.000Z',
  ...overrides,
});

/**
 * Writes `count` dead letters of `target` straight to its dead-letter topic: record n has key
 * `k-n`, message id `m-n` and what `record(n)` gives. Four go in a send, so that values of 200 KB
 * stay under the broker's 1 MiB a request.
 */
export async function sendDeadLetters(
  target: string,
  count: number,
  record: (n: number) => { value: Buffer | string; headers?: IHeaders },
): Promise<void> {
  const producer = kafka().producer();
  await producer.connect();
  try {
    for (let first = 0; first < count; first += 4)
      await producer.send({
        topic: dlqTopic(target),
        messages: Array.from({ length: Math.min(4, count - first) }, (_, i) => {
          const { value, headers } = record(first + i);
          return {
            key: `k-${first + i}`,
            value,
            headers: { ...deadLetterHeaders(target, `m-${first + i}`), ...headers },
          };
        }),
      });
  } finally {
    await producer.disconnect();
  }
}

/** A new target topic (`prefix` and a unique suffix) and its dead-letter topic, holding `count` dead letters as `sendDeadLetters` writes them. */
export async function deadLetterTopic(
  prefix: string,
  count: number,
  record: (n: number) => { value: Buffer | string; headers?: IHeaders },
): Promise<{ target: string; drop: () => Promise<void> }> {
  const target = uniqueName(prefix);
  const topics = [target, dlqTopic(target)];
  await createTestTopics(topics.map((topic) => ({ topic })));
  await sendDeadLetters(target, count, record);
  return { target, drop: () => withAdmin((admin) => admin.deleteTopics({ topics })) };
}

/** A local port nothing listens on (just closed), to point a client at a dependency that is down. */
export const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
