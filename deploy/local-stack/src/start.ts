import { connectionEnv, env, loadConfig, z } from '@shoal/config';
import { formatTable, parseCli, runCli } from '@shoal/config/cli';
import { setup } from '@shoal/entrypoint/setup';
import { topicNames } from '@shoal/contracts';
import { createPool, serviceSchema } from '@shoal/db';
import { runDemo } from './demo.js';
import { runLifecycleDemo, type Agent } from './lifecycle-demo.js';
import { ensureService } from './services.js';
import { stackSettings } from './settings.js';
import { up } from './stack.js';

const groupingSchema = serviceSchema('grouping');
const DEV_AGENT_TOKENS =
  'shoal-agent:shoal-dev-agent-token:read+claim+write+admin,shoal-agent-2:shoal-dev-agent-token-2:read+claim+write';

const usage = `Usage: npm start [-- --demo]

Does all the set-up on a fresh machine and shows what runs where:
  1. the local stack (Kafka, schema registry kept in PostgreSQL, PostgreSQL)  npm run stack -- up
  2. every service's migrations (runtime's and its own, into its schema)      npm run migrate -- up
  3. every topic and its dead-letter topic                                    npm run topics -- create
  4. every topic schema, BACKWARD-compatible                                  npm run schemas -- register
  5. the services in the background: grouping, regression, dedup, lifecycle (with the agent API),
     ingest-gateway
     (logs under .cache/stack/services; a consumer migrates at start too and finds step 2 done)
Steps 2-4 are the image's \`setup\`. Each step is idempotent; running it again changes nothing.
\`npm run stack -- down\` stops everything.

  --demo   then publish sample traffic (through the gateway and the producer package) and print the groups;
           then an agent works the most severe issue through the agent API (claim — a second agent's
           claim gets 409 —, renew, in_progress, note, run event, verification, resolved in a commit
           and a release) and its history and lifecycle events are printed (needs two API tokens)

Environment: as for the steps above (DATABASE_URL, KAFKA_BROKERS, SCHEMA_REGISTRY_URL,
SHOAL_TOPIC_NAMESPACE, SHOAL_*_PORT, ...). SHOAL_REGISTRY_STORAGE defaults to sql here;
SHOAL_GATEWAY_PORT (8090), SHOAL_INGEST_TOKENS (default shoal-dev-token), SHOAL_GROUPING_OPS_PORT (9464),
SHOAL_REGRESSION_OPS_PORT (9465), SHOAL_DEDUP_OPS_PORT (9466), SHOAL_LIFECYCLE_OPS_PORT (9467),
SHOAL_API_PORT (8091, the agent API), SHOAL_API_TOKENS (default: two dev agents, shoal-agent
with admin and shoal-agent-2), SHOAL_ERROR_TRACKER_DSN (default off).
`;

runCli(async () => {
  const { values } = parseCli(usage, { demo: { type: 'boolean' } });
  const settings = stackSettings({ SHOAL_REGISTRY_STORAGE: 'sql', ...process.env });
  const config = loadConfig({
    ...connectionEnv,
    SHOAL_TOPIC_NAMESPACE: z.string().default(''),
    SHOAL_GATEWAY_PORT: env.port().default(8090),
    SHOAL_GROUPING_OPS_PORT: env.port().default(9464),
    SHOAL_REGRESSION_OPS_PORT: env.port().default(9465),
    SHOAL_DEDUP_OPS_PORT: env.port().default(9466),
    SHOAL_LIFECYCLE_OPS_PORT: env.port().default(9467),
    SHOAL_API_PORT: env.port().default(8091),
    SHOAL_API_TOKENS: z.string().default(DEV_AGENT_TOKENS),
    SHOAL_INGEST_TOKENS: z.string().default('shoal-dev-token'),
  });
  const steps = values.demo ? 6 : 5;
  const step = (n: number, what: string) => process.stderr.write(`[${n}/${steps}] ${what}\n`);
  const started = Date.now();

  step(1, 'local stack');
  const servers = await up(settings, (line) => process.stderr.write(`      ${line}\n`));

  // steps 2-4 are the image's `setup` (the Kubernetes Job): the same code
  const prepared = await setup(process.env, (what) =>
    step({ migrations: 2, topics: 3, schemas: 4 }[what] ?? 0, what),
  );
  const created = prepared.topics;
  const schemas = prepared.schemas;

  step(5, 'services');
  const shared = {
    KAFKA_BROKERS: config.KAFKA_BROKERS.join(','),
    SCHEMA_REGISTRY_URL: config.SCHEMA_REGISTRY_URL,
    DATABASE_URL: config.DATABASE_URL,
    SHOAL_TOPIC_NAMESPACE: config.SHOAL_TOPIC_NAMESPACE,
    // a local run reports to no tracker unless told to: `off` is shown as off, not as missing
    SHOAL_ERROR_TRACKER_DSN: process.env.SHOAL_ERROR_TRACKER_DSN ?? 'off',
  };
  const token = config.SHOAL_INGEST_TOKENS.split(',')[0]!.split(':')[0]!;
  const consumers = [
    ['grouping', config.SHOAL_GROUPING_OPS_PORT],
    ['regression', config.SHOAL_REGRESSION_OPS_PORT],
    ['dedup', config.SHOAL_DEDUP_OPS_PORT],
    ['lifecycle', config.SHOAL_LIFECYCLE_OPS_PORT],
  ] as const;
  // lifecycle serves the agent API beside its consumers
  const agentApi = {
    // decide's transactions at the size the figures were taken with (as in deploy/k8s)
    SHOAL_MAX_BATCH_SIZE: process.env.SHOAL_MAX_BATCH_SIZE ?? '500',
    SHOAL_API_PORT: String(config.SHOAL_API_PORT),
    SHOAL_API_TOKENS: config.SHOAL_API_TOKENS,
  };
  const agents: Agent[] = config.SHOAL_API_TOKENS.split(',').map((entry) => {
    const [actor, token] = entry.trim().split(':');
    return { actor: actor!, token: token! };
  });
  const agentToken = agents[0]!.token;
  const services = [
    ...consumers.map(([name, port]) => ({
      name,
      port,
      env: {
        ...shared,
        SHOAL_OPS_PORT: String(port),
        ...(name === 'lifecycle' && agentApi),
      },
    })),
    {
      name: 'ingest-gateway' as const,
      port: config.SHOAL_GATEWAY_PORT,
      env: {
        ...shared,
        SHOAL_GATEWAY_PORT: String(config.SHOAL_GATEWAY_PORT),
        SHOAL_INGEST_TOKENS: config.SHOAL_INGEST_TOKENS,
      },
    },
  ];
  const pids = await Promise.all(
    services.map((spec) => ensureService(settings.home, spec, settings.startTimeoutMs)),
  );

  const rows = [
    ...servers.map((s) => ({
      component: s.server,
      state: s.state,
      where: s.address,
      detail: `pid ${s.pid}; ${s.detail}`,
    })),
    ...prepared.migrations.map((m) => ({
      component: 'migrations',
      state: 'applied',
      where: `${config.DATABASE_URL} schema ${m.schema}`,
      detail: m.applied.length ? `applied now: ${m.applied.join(', ')}` : 'up to date',
    })),
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
    ...consumers.map(([name, port], i) => ({
      component: name,
      state: 'running',
      where: `http://127.0.0.1:${port}/metrics`,
      detail: `pid ${pids[i]}; /healthz /readyz /metrics`,
    })),
    {
      component: 'agent API',
      state: 'running',
      where: `http://127.0.0.1:${config.SHOAL_API_PORT}/v1/issues`,
      detail: `lifecycle's; Authorization: Bearer ${agentToken}; /openapi.json`,
    },
    {
      component: 'ingest-gateway',
      state: 'running',
      where: `http://127.0.0.1:${config.SHOAL_GATEWAY_PORT}/v1/occurrences`,
      detail: `pid ${pids[consumers.length]}; Authorization: Bearer ${token}; /openapi.json`,
    },
  ];
  process.stdout.write(
    `${formatTable(rows)}\n\nready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
  if (values.demo) {
    step(6, 'demo traffic');
    const pool = createPool(config.DATABASE_URL, {
      applicationName: 'shoal-demo',
      schema: groupingSchema,
    });
    try {
      const groups = await runDemo({
        gatewayUrl: `http://127.0.0.1:${config.SHOAL_GATEWAY_PORT}`,
        token,
        brokers: config.KAFKA_BROKERS,
        registryUrl: config.SCHEMA_REGISTRY_URL,
        namespace: config.SHOAL_TOPIC_NAMESPACE,
        pool,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`\ngroups:\n${formatTable(groups)}\n`);
    } finally {
      await pool.end();
    }
    if (agents.length < 2)
      throw new Error('the demo needs two agents in SHOAL_API_TOKENS (actor:token:scopes,…)');
    process.stderr.write('      lifecycle: an agent works the most severe issue\n');
    const lifecyclePool = createPool(config.DATABASE_URL, {
      applicationName: 'shoal-demo',
      schema: serviceSchema('lifecycle'),
    });
    try {
      const { history, events } = await runLifecycleDemo({
        apiUrl: `http://127.0.0.1:${config.SHOAL_API_PORT}`,
        agents: [agents[0]!, agents[1]!],
        pool: lifecyclePool,
        lifecycleTopic: topicNames(config.SHOAL_TOPIC_NAMESPACE).lifecycle,
        release: 'shop@2.0.1',
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`\nissue history:\n${formatTable(history)}\n`);
      process.stdout.write(`\nlifecycle events (shoal.lifecycle.v1):\n${formatTable(events)}\n`);
    } finally {
      await lifecyclePool.end();
    }
  }
  return 0;
});
