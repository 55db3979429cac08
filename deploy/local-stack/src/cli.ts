import { tail } from './processes.js';
import { stackSettings } from './settings.js';
import { formatTable, parseCli, runCli } from '@shoal/config/cli';
import { down, logPaths, status, up, type ServerStatus } from './stack.js';

const help = `Usage: npm run stack -- <command> [options]

Starts Shoal's real local stack natively on 127.0.0.1: Apache Kafka (KRaft, single node),
Apicurio Registry (Confluent-compatible API at /apis/ccompat/v7) and PostgreSQL (the server at
DATABASE_URL, or a private cluster started from Debian's PostgreSQL when none answers).

Commands:
  up                 install what is missing, start what is not running, wait until each answers
  down               stop the servers this stack started (never anything else)
  status             one line per server: state, address, pid, version
  logs [server] [-n N]  the last N (default 40) log lines of kafka, registry or postgres

Environment:
  DATABASE_URL                     PostgreSQL to use (default postgres://postgres@127.0.0.1:5432/shoal)
  SHOAL_KAFKA_PORT                 broker port (default 9092)
  SHOAL_KAFKA_CONTROLLER_PORT      KRaft controller port (default 9093)
  SHOAL_REGISTRY_PORT              registry HTTP port (default 8081)
  SHOAL_REGISTRY_MANAGEMENT_PORT   registry management port (default 9001)
  SHOAL_REGISTRY_STORAGE           mem (default) or sql (schemas kept in PostgreSQL)
  SHOAL_STACK_HOME                 downloads, data, logs, pid files (default .cache/stack)
  SHOAL_START_TIMEOUT_SECONDS      how long to wait for each server (default 120)
`;

export function printStatus(rows: ServerStatus[]): void {
  process.stdout.write(`${formatTable(rows as unknown as Record<string, unknown>[])}\n`);
}

runCli(async () => {
  const { positionals, values } = parseCli(help, { lines: { type: 'string', short: 'n' } });
  const [command, ...servers] = positionals;
  const settings = stackSettings();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  switch (command) {
    case 'up':
      printStatus(await up(settings, log));
      return 0;
    case 'down':
      await down(settings, log);
      return 0;
    case 'status': {
      const rows = await status(settings);
      printStatus(rows);
      return rows.every((r) => r.state === 'running') ? 0 : 3;
    }
    case 'logs': {
      const lines = Number(values.lines ?? 40);
      if (!Number.isInteger(lines) || lines <= 0)
        throw new Error('logs: -n takes a positive whole number');
      const paths = logPaths(settings);
      const unknown = servers.filter((server) => !(server in paths));
      if (unknown.length)
        throw new Error(`logs: unknown server "${unknown[0]}" (kafka, registry or postgres)`);
      for (const server of (servers.length
        ? servers
        : Object.keys(paths)) as (keyof typeof paths)[]) {
        process.stdout.write(`==> ${server}: ${paths[server]}\n${tail(paths[server], lines)}\n`);
      }
      return 0;
    }
    default:
      process.stderr.write(command ? `unknown command "${command}"\n\n${help}` : help);
      return 2;
  }
});
