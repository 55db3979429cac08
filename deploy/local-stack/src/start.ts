import { connectionEnv, loadConfig, z } from '@shoal/config';
import { formatTable, parseCli, runCli } from '@shoal/config/cli';
import {
  createRegistry,
  createTopics,
  planTopics,
  registerSchemas,
  topicNames,
  withAdmin,
} from '@shoal/contracts';
import { migrate } from '@shoal/db';
import { stackSettings } from './settings.js';
import { up } from './stack.js';

const usage = `Usage: npm start

Does all the set-up on a fresh machine and shows what runs where:
  1. the local stack (Kafka, schema registry kept in PostgreSQL, PostgreSQL)  npm run stack -- up
  2. the database migrations                                                  npm run migrate -- up
  3. every topic and its dead-letter topic                                    npm run topics -- create
  4. every topic schema, BACKWARD-compatible                                  npm run schemas -- register
Each step is idempotent; running it again changes nothing.

Environment: as for the steps above (DATABASE_URL, KAFKA_BROKERS, SCHEMA_REGISTRY_URL,
SHOAL_TOPIC_NAMESPACE, SHOAL_*_PORT, ...). SHOAL_REGISTRY_STORAGE defaults to sql here.
`;

runCli(async () => {
  parseCli(usage, {});
  const settings = stackSettings({ SHOAL_REGISTRY_STORAGE: 'sql', ...process.env });
  const config = loadConfig({ ...connectionEnv, SHOAL_TOPIC_NAMESPACE: z.string().default('') });
  const step = (n: number, what: string) => process.stderr.write(`[${n}/4] ${what}\n`);
  const started = Date.now();

  step(1, 'local stack');
  const servers = await up(settings, (line) => process.stderr.write(`      ${line}\n`));

  step(2, 'migrations');
  const migrations = await migrate({ databaseUrl: config.DATABASE_URL, direction: 'up' });

  step(3, 'topics');
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const created = await withAdmin(config.KAFKA_BROKERS, (admin) =>
    createTopics(admin, planTopics(topics)),
  );

  step(4, 'schemas');
  const schemas = await registerSchemas(createRegistry(config.SCHEMA_REGISTRY_URL), topics);

  const rows = [
    ...servers.map((s) => ({
      component: s.server,
      state: s.state,
      where: s.address,
      detail: `pid ${s.pid}; ${s.detail}`,
    })),
    {
      component: 'migrations',
      state: 'applied',
      where: config.DATABASE_URL,
      detail: migrations.length
        ? `applied now: ${migrations.map((m) => m.name).join(', ')}`
        : 'up to date',
    },
    {
      component: 'topics',
      state: 'ready',
      where: config.KAFKA_BROKERS.join(','),
      detail: `${created.filter((t) => !t.dlq).length} topics + ${created.filter((t) => t.dlq).length} DLQs (${created.filter((t) => t.state === 'created').length} created now)`,
    },
    ...schemas.map((s) => ({
      component: 'schema',
      state: 'registered',
      where: s.subject,
      detail: `id ${s.id}`,
    })),
  ];
  process.stdout.write(
    `${formatTable(rows)}\n\nready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
  return 0;
});
