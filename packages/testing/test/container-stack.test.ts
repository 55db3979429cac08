import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { freePort, runEntryPoint } from '../src/index.js';

const runSetup = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run-global-setup.ts');

it('SHOAL_TEST_STACK=testcontainers without a Docker engine fails at once, saying so, and starts nothing else', async () => {
  // an engine address where nothing listens: what a machine without Docker gives it
  const dead = `tcp://127.0.0.1:${await freePort()}`;
  const started = Date.now();
  const result = runEntryPoint(runSetup, [], {
    SHOAL_TEST_STACK: 'testcontainers',
    DOCKER_HOST: dead,
  });
  expect(result.status).toBe(1);
  expect(result.stderr).toContain(
    'SHOAL_TEST_STACK=testcontainers, but no Docker engine answers (',
  );
  expect(result.stderr).toContain('or unset SHOAL_TEST_STACK to use the native stack');
  // never the native stack's `up` as a silent fallback (it prints its status table)
  expect(result.stdout + result.stderr).not.toMatch(/kafka\s+running/);
  expect(Date.now() - started).toBeLessThan(30_000);
});

it('an unknown SHOAL_TEST_STACK is named', () => {
  const result = runEntryPoint(runSetup, [], { SHOAL_TEST_STACK: 'docker' });
  expect(result.status).toBe(1);
  expect(result.stderr).toContain(
    'SHOAL_TEST_STACK: expected one of native, testcontainers (got "docker")',
  );
});
