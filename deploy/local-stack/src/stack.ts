import net from 'node:net';
import { KAFKA_VERSION, REGISTRY_PRIMARY, type StackSettings } from './settings.js';
import {
  installKafka,
  kafkaAnswers,
  kafkaLog,
  kafkaPid,
  kafkaProcess,
  startKafka,
} from './kafka.js';
import {
  chooseRegistry,
  installRegistry,
  registryAnswers,
  registryDatabase,
  registryInfo,
  registryLog,
  registryPid,
  registryProcess,
  registryRunInfo,
  startRegistry,
} from './registry.js';
import {
  ensureDatabase,
  postgresAnswers,
  postgresLog,
  postgresPid,
  postgresProcess,
  serverVersion,
  startPrivatePostgres,
} from './postgres.js';
import { startFailure, stopProcess, waitUntil, withLock } from './processes.js';
import { serviceProcess } from './services.js';

export type Log = (line: string) => void;

export interface ServerStatus {
  server: 'postgres' | 'kafka' | 'registry';
  state: 'running' | 'stopped';
  address: string;
  pid: number | 'external' | '-';
  detail: string;
}

function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

async function answersWithin(answers: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await answers()) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

/** Starts a server unless it already answers; on failure the error names it and shows what its log says (startFailure). */
async function ensureServer(opts: {
  name: string;
  port: number;
  envHint: string;
  answers: () => Promise<boolean>;
  ourPid: () => number | undefined;
  start: () => number;
  logPath: string;
  timeoutMs: number;
  log: Log;
}): Promise<void> {
  if (await opts.answers()) return;
  let pid = opts.ourPid();
  if (pid === undefined) {
    // a busy server can miss one probe; give whatever holds the port a few seconds to answer
    if (await portTaken(opts.port)) {
      if (await answersWithin(opts.answers, 10_000)) return;
      throw new Error(
        `${opts.name}: port ${opts.port} is taken by another process that does not answer as ${opts.name}; free it or set ${opts.envHint}`,
      );
    }
    pid = opts.start();
    opts.log(`${opts.name}: started (pid ${pid}), waiting until it answers`);
  } else {
    opts.log(`${opts.name}: pid ${pid} is starting, waiting until it answers`);
  }
  try {
    await waitUntil(opts.name, opts.answers, opts.timeoutMs, () => opts.ourPid() !== undefined);
  } catch (error) {
    throw startFailure(error, opts.logPath);
  }
  opts.log(`${opts.name}: ready on 127.0.0.1:${opts.port}`);
}

export async function up(s: StackSettings, log: Log): Promise<ServerStatus[]> {
  return withLock(s.home, async () => {
    await ensureServer({
      name: 'postgres',
      port: s.postgres.port,
      envHint: 'DATABASE_URL',
      answers: () => postgresAnswers(s.postgres),
      ourPid: () => postgresPid(s.postgres),
      start: () => {
        if (!['127.0.0.1', 'localhost'].includes(s.postgres.host)) {
          throw new Error(
            `postgres: nothing answers at DATABASE_URL (${s.postgres.host}:${s.postgres.port}), and a private cluster can only be started on 127.0.0.1`,
          );
        }
        return startPrivatePostgres(s.postgres, log);
      },
      logPath: postgresLog(s.postgres),
      timeoutMs: s.startTimeoutMs,
      log,
    });
    if (await ensureDatabase(s.postgres, s.postgres.database))
      log(`postgres: created database ${s.postgres.database}`);
    if (s.registry.storage === 'sql') await ensureDatabase(s.postgres, registryDatabase);

    const registry = chooseRegistry();
    if (registry.note) log(`registry: ${registry.note}`);
    // a server that already answers (this stack's or another's) needs nothing installed: a
    // second stack home for a broker of its own beside a running registry installs Kafka only
    const [kafkaUp, registryUp] = await Promise.all([
      kafkaAnswers(s.kafka.brokers),
      registryAnswers(s.registry.url),
    ]);
    if (!kafkaUp) installKafka(s.kafka, log);
    if (!registryUp) installRegistry(s.registry, registry.version, log);
    // both are waited for even when one fails, so no start is left half-reported
    const started = await Promise.allSettled([
      ensureServer({
        name: 'kafka',
        port: s.kafka.port,
        envHint: 'SHOAL_KAFKA_PORT',
        answers: () => kafkaAnswers(s.kafka.brokers),
        ourPid: () => kafkaPid(s.kafka),
        start: () => startKafka(s.kafka, log),
        logPath: kafkaLog(s.kafka),
        timeoutMs: s.startTimeoutMs,
        log,
      }),
      ensureServer({
        name: 'registry',
        port: s.registry.port,
        envHint: 'SHOAL_REGISTRY_PORT',
        answers: () => registryAnswers(s.registry.url),
        ourPid: () => registryPid(s.registry),
        start: () => startRegistry(s.registry, registry, s.postgres),
        logPath: registryLog(s.registry),
        timeoutMs: s.startTimeoutMs,
        log,
      }),
    ]);
    const info = registryRunInfo(s.registry);
    if (
      info &&
      registryPid(s.registry) !== undefined &&
      info.storage !== s.registry.storage &&
      registry.version === REGISTRY_PRIMARY.version
    ) {
      log(
        `registry: already running with ${info.storage} storage, not ${s.registry.storage}; \`npm run stack -- down\` and up again to switch`,
      );
    }
    const failed = started.flatMap((r) =>
      r.status === 'rejected' ? [(r.reason as Error).message] : [],
    );
    if (failed.length) throw new Error(failed.join('\n'));
    return status(s);
  });
}

export async function down(s: StackSettings, log: Log): Promise<void> {
  await withLock(s.home, async () => {
    for (const [name, proc] of [
      ['ingest-gateway', serviceProcess(s.home, 'ingest-gateway')],
      ['lifecycle', serviceProcess(s.home, 'lifecycle')],
      ['regression', serviceProcess(s.home, 'regression')],
      ['dedup', serviceProcess(s.home, 'dedup')],
      ['grouping', serviceProcess(s.home, 'grouping')],
      ['registry', registryProcess(s.registry)],
      ['kafka', kafkaProcess(s.kafka)],
      ['postgres', postgresProcess(s.postgres)],
    ] as const) {
      log(
        (await stopProcess(proc))
          ? `${name}: stopped`
          : `${name}: not started by this stack, left alone`,
      );
    }
  });
}

export async function status(s: StackSettings): Promise<ServerStatus[]> {
  const [pgUp, kafkaUp, registryUp] = await Promise.all([
    postgresAnswers(s.postgres),
    kafkaAnswers(s.kafka.brokers),
    registryAnswers(s.registry.url),
  ]);
  const pidOf = (up: boolean, ours: number | undefined) =>
    up ? (ours ?? 'external') : (ours ?? '-');
  const registryPidNow = registryPid(s.registry);
  const running = registryPidNow === undefined ? undefined : registryRunInfo(s.registry);
  return [
    {
      server: 'postgres',
      state: pgUp ? 'running' : 'stopped',
      address: `${s.postgres.host}:${s.postgres.port}/${s.postgres.database}`,
      pid: pidOf(pgUp, postgresPid(s.postgres)),
      detail: pgUp ? `PostgreSQL ${await serverVersion(s.postgres)}` : '',
    },
    {
      server: 'kafka',
      state: kafkaUp ? 'running' : 'stopped',
      address: s.kafka.brokers.join(','),
      pid: pidOf(kafkaUp, kafkaPid(s.kafka)),
      detail: `Apache Kafka ${KAFKA_VERSION} (KRaft, controller :${s.kafka.controllerPort})`,
    },
    {
      server: 'registry',
      state: registryUp ? 'running' : 'stopped',
      address: s.registry.url,
      pid: pidOf(registryUp, registryPidNow),
      detail: [
        (registryUp && (await registryInfo(s.registry.port))) || 'Apicurio Registry',
        running && `Java ${running.java}`,
        running
          ? `storage ${running.storage}`
          : registryUp
            ? 'not started by this stack'
            : undefined,
        running &&
          running.version !== REGISTRY_PRIMARY.version &&
          'fallback release: no Java >= 21 here',
      ]
        .filter(Boolean)
        .join(', '),
    },
  ];
}

export function logPaths(s: StackSettings): Record<ServerStatus['server'], string> {
  return {
    postgres: postgresLog(s.postgres),
    kafka: kafkaLog(s.kafka),
    registry: registryLog(s.registry),
  };
}
