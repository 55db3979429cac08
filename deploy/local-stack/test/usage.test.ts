import { runEntryPoint } from '@shoal/testing';
import { serviceNames } from '@shoal/entrypoint';
import { expect, it } from 'vitest';

// Apart from stack.test.ts, which starts whole stacks: this one is quick enough for every Node.

const cli = 'deploy/local-stack/src/cli.ts';

it('npm run stack prints its usage for --help and refuses an unknown command', () => {
  expect(runEntryPoint(cli, ['--help']).stdout).toContain('Usage: npm run stack -- <command>');
  const unknown = runEntryPoint(cli, ['sideways']);
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain('unknown command "sideways"');
});

it('npm run stack -- status names each server and its state', () => {
  const status = runEntryPoint(cli, ['status']);
  expect(status.stdout).toMatch(/^postgres\s+running/m);
  expect(status.stdout).toMatch(/^kafka\s+running/m);
  expect(status.stdout).toMatch(/^registry\s+running/m);
});

it("npm start --help names every service the image's dispatcher knows, and its environment once", () => {
  const help = runEntryPoint('deploy/local-stack/src/start.ts', ['--help']);
  expect(help.status).toBe(0);
  for (const name of serviceNames) expect(help.stdout).toContain(name);
  expect(help.stdout.match(/^Environment:/gm)).toHaveLength(1);
});
