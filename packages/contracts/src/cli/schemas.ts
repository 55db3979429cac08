import { checkSchemas, createRegistry, registerSchemas } from '../registry.js';
import { cliConfig, formatTable, parseCli, runCli } from './common.js';

const usage = `Usage: npm run schemas -- register|check

  register   registers each schemas/<topic>.schema.json as subject <topic>-value, BACKWARD compatibility
  check      compares each local schema with the latest registered version; exits 1 on a breaking change

Environment: SCHEMA_REGISTRY_URL (default http://127.0.0.1:8081/apis/ccompat/v7),
SHOAL_TOPIC_NAMESPACE (topic prefix, default none).
`;

runCli(async () => {
  const { positionals } = parseCli(usage, {});
  const command = positionals[0];
  if (!command || !['register', 'check'].includes(command) || positionals.length !== 1) {
    process.stderr.write(usage);
    return 2;
  }
  const config = cliConfig();
  const registry = createRegistry(config.SCHEMA_REGISTRY_URL);
  if (command === 'check') {
    const reports = await checkSchemas(registry, config.topics);
    process.stdout.write(
      `${formatTable(reports.map((r) => ({ subject: r.subject, state: r.state, detail: r.messages.join(' | ') })))}\n`,
    );
    const breaking = reports.filter((r) => r.state === 'breaking');
    if (breaking.length) {
      process.stderr.write(
        `breaking change in ${breaking.map((r) => r.subject).join(', ')}: not BACKWARD-compatible with the registered version\n`,
      );
      return 1;
    }
    return 0;
  }
  const reports = await checkSchemas(registry, config.topics);
  const breaking = reports.filter((r) => r.state === 'breaking');
  if (breaking.length) {
    process.stderr.write(
      `refusing to register: ${breaking.map((r) => `${r.subject} (${r.messages.join(' | ') || 'incompatible'})`).join(', ')}\n`,
    );
    return 1;
  }
  const registered = await registerSchemas(registry, config.topics);
  process.stdout.write(
    `${formatTable(registered.map((r) => ({ subject: r.subject, id: r.id, state: reports.find((x) => x.key === r.key)?.state })))}\n`,
  );
  return 0;
});
