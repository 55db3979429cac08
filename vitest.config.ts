import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources (the `shoal-source` export condition),
// so tests never need a build first.

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
  },
});
