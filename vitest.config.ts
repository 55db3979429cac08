import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';
import SlowestFirst from './packages/testing/src/slowest-first.js';

// Workspace packages resolve to their TypeScript sources (the `shoal-source` export condition),
// so tests never need a build first. SHOAL_TEST_REPORT=<file> also writes vitest's JSON report
// there (`.ci/run` counts the tests of each run from it) while the command stays `npm test`.

const report = process.env.SHOAL_TEST_REPORT;

export default defineConfig({
  resolve: { conditions: ['shoal-source', ...defaultClientConditions] },
  ssr: { resolve: { conditions: ['shoal-source', ...defaultServerConditions] } },
  test: {
    include: ['**/test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', '.cache/**'],
    globalSetup: [
      fileURLToPath(new URL('./packages/testing/src/global-setup.ts', import.meta.url)),
    ],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // a worker runs file after file without a fresh process and module graph: on the 2-core box a
    // fork and re-import per file cost 91 s of the whole suite's 1,303 s, and 23 % of 46 mid-sized
    // files' time. Tests that change process.env restore it, nothing here mocks modules, and a file
    // must close every client it opens (the next files share its process).
    isolate: false,
    // two files at once: most of a file's time is spent waiting on Kafka and PostgreSQL, and vitest's
    // default on a 2-core machine is one at a time
    maxWorkers: 2,
    sequence: { sequencer: SlowestFirst },
    ...(report && { reporters: ['default', ['json', { outputFile: report }]] }),
  },
});
