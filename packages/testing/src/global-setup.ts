import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * Vitest global setup: brings the real stack up through the same entry point as
 * `npm run stack -- up` (a no-op when it already runs). The stack is left running afterwards
 * so the next run starts in seconds; `npm run stack -- down` stops it.
 */
export default function setup(): void {
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
