import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectedStack, startContainerStack } from './container-stack.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * Vitest global setup. By default brings the real stack up through the same entry point as
 * `npm run stack -- up` (a no-op when it already runs); the stack is left running afterwards so
 * the next run starts in seconds; `npm run stack -- down` stops it. With
 * SHOAL_TEST_STACK=testcontainers it starts the same servers in containers instead, points the
 * tests at them (KAFKA_BROKERS, SCHEMA_REGISTRY_URL, DATABASE_URL) and stops them afterwards.
 */
export default async function setup(): Promise<(() => Promise<void>) | void> {
  if (selectedStack() === 'testcontainers') {
    const stack = await startContainerStack();
    // the test workers are forked after this, and inherit it
    Object.assign(process.env, stack.env);
    return () => stack.stop();
  }
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--conditions=shoal-source', 'deploy/local-stack/src/cli.ts', 'up'],
    { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'], env: process.env },
  );
  if (result.status !== 0) {
    throw new Error(
      `the local stack did not come up (npm run stack -- up exited ${result.status}); see above`,
    );
  }
}
