import { ConfigError, orExitOnConfigError } from '@shoal/config';
import { serviceMains, serviceNames, type ServiceName } from './mains.js';

/**
 * The image's ENTRYPOINT. `<service>` imports that service's main module, which runs it as
 * `npm start` does (its configuration, SIGTERM handling and exit code are its own: a consumer
 * finishes and commits the batch in flight, then exits 0). `setup` runs what must exist before the
 * services (the Job). `check-config <service>` parses the service's variables and exits. Each
 * loads only what it needs: every service's configuration is ~700 modules, one service's main less.
 */
const usage = `Usage: <image> <service>            run a service: ${serviceNames.join(', ')}
       <image> setup                migrations of every service, topics, schemas (idempotent), then exit
       <image> check-config <service>  parse the service's environment as it would at start, then exit

Exit codes: 0 ok; 1 failed; 2 bad usage (an unknown service is named); 78 bad configuration.
Configuration is the environment only (see the README's Configuration and Deploy sections).
`;

const [command, name, ...rest] = process.argv.slice(2);
const known = (n: string | undefined): n is ServiceName =>
  n !== undefined && Object.hasOwn(serviceMains, n);

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage}`);
  process.exit(2);
}

if (command === undefined || command === '--help' || command === '-h') {
  process.stdout.write(usage);
  process.exit(command === undefined ? 2 : 0);
} else if (command === 'setup') {
  if (name !== undefined) fail(`setup takes no arguments (got ${name})`);
  try {
    const { setup } = await import('./setup.js');
    const done = await setup(process.env, (step) => process.stderr.write(`setup: ${step}\n`));
    for (const m of done.migrations)
      process.stderr.write(
        `setup: schema ${m.schema}: ${m.applied.length ? `applied ${m.applied.join(', ')}` : 'up to date'}\n`,
      );
    const created = done.topics.filter((t) => t.state === 'created').length;
    process.stderr.write(
      `setup: ${done.topics.length} topics (${created} created now), ${done.schemas.length} schemas registered\n`,
    );
    process.exit(0);
  } catch (error) {
    process.stderr.write(
      error instanceof ConfigError
        ? `${error.message}\n`
        : `setup failed: ${(error as Error).message}\n`,
    );
    process.exit(error instanceof ConfigError ? 78 : 1);
  }
} else if (command === 'check-config') {
  if (!known(name) || rest.length)
    fail(`check-config takes one service name (got ${name ?? 'none'})`);
  const { services } = await import('./services.js');
  const { opsPort } = orExitOnConfigError(() => services[name]!.config(process.env));
  process.stdout.write(
    `${name}: configuration ok; /healthz /readyz /metrics ${opsPort === undefined ? 'not served (no port set)' : `on port ${opsPort}`}\n`,
  );
  process.exit(0);
} else if (known(command)) {
  if (name !== undefined) fail(`a service takes no arguments (got ${name})`);
  await serviceMains[command]();
} else {
  fail(`unknown service "${command}"; known: ${serviceNames.join(', ')}`);
}
