import setup from '../src/global-setup.js';

// What vitest does with the global setup, as a process of its own: a failure is printed and exits 1.
try {
  await setup();
  process.exit(0);
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}
