import type { Command } from '@commander-js/extra-typings';
import { connectionEnv, loadConfig } from '@shoal/config';
import { connectionsHelp } from '../connections.js';
import { exitCodes } from '../exit.js';
import { colorsFor, jsonLines, table, type Colors } from '../terminal.js';
import { gatherStatus, type GroupStatus, type ServiceStatus, type Status } from './gather.js';

/** `shoal status`: its option, help text, output (a table, or one JSON object) and exit code. */

const statusHelp = `
Per service (each schema of DATABASE_URL holding the runtime's tables): its instances (their
heartbeats: ready, or which check fails; one whose beat is older than three intervals is gone),
lag per partition (Kafka's high watermark minus the offset stored in PostgreSQL), dead letters
not yet replayed or discarded per reason, parked keys, held references per kind (oldest, next
deadline), the outbox backlog (unpublished rows, events set aside), for grouping its groups by
status and for lifecycle its issues by status (deleted ones left out). Then Kafka, PostgreSQL, the schema registry and the error tracker as this command sees
them: a dependency that cannot be reached is a down line saying why. The error tracker
(SHOAL_ERROR_TRACKER_DSN: unset is "not configured", "off" is off) never decides readiness.

Examples:
  npx shoal status
  npx shoal status --json | jq '.services[] | {service, ready, why}'

Exit codes:
  0    Kafka, PostgreSQL, the registry and every service are ready
  1    failed
  4    a dependency or a service is down or not ready (the report says which)
  78   bad configuration (an environment variable)
  130  interrupted

${connectionsHelp}
  SCHEMA_REGISTRY_URL       the registry (default http://127.0.0.1:8081/apis/ccompat/v7)
  SHOAL_ERROR_TRACKER_DSN   the error tracker (unset: not configured; off: off)`;

const word = (colors: Colors, ok: boolean, text: string) =>
  ok ? colors.green(text) : colors.red(text);

const lagText = (g: GroupStatus) =>
  g.partitions
    .map(
      (p) =>
        `${p.topic}/${p.partition}: ${p.lag ?? '?'}` +
        (p.halted ? ` (halted: ${p.haltedReason})` : '') +
        (p.highWatermark === null ? ' (no high watermark: Kafka down or topic gone)' : ''),
    )
    .join('\n') || '-';

const countsText = (counts: Record<string, number>) =>
  Object.entries(counts)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ') || 'none';

function serviceTable(colors: Colors, s: ServiceStatus): string {
  const rows: (string | number)[][] = [
    [
      'instances',
      s.instances
        .map(
          (i) =>
            `${i.instanceId} ${i.live ? word(colors, i.ready, i.ready ? 'ready' : 'not ready') : colors.dim('gone')}, beat ${i.beatAt}` +
            `, error tracker ${i.checks.error_tracker?.status ?? '?'}`,
        )
        .join('\n') || 'none',
    ],
  ];
  for (const g of s.groups)
    rows.push(
      [`${g.group}: lag`, lagText(g)],
      [`${g.group}: dead letters`, countsText(g.deadLetters)],
      [
        `${g.group}: parked`,
        `${g.parked.keys} key(s), ${g.parked.messages} message(s)` +
          (g.parked.oldest ? `, oldest since ${g.parked.oldest}` : ''),
      ],
      [
        `${g.group}: held`,
        g.held
          .map(
            (h) =>
              `${h.entity}: ${h.messages}, oldest ${h.oldest}, next deadline ${h.nextDeadline}`,
          )
          .join('\n') || 'none',
      ],
    );
  rows.push([
    'outbox backlog',
    `${s.outbox.unpublishedRows} unpublished row(s), ${s.outbox.setAside} event(s) set aside`,
  ]);
  if (s.issueGroups) rows.push(['groups', countsText(s.issueGroups)]);
  if (s.issues) rows.push(['issues', countsText(s.issues)]);
  const head = `service ${s.service}: ${word(colors, s.ready, s.ready ? 'ready' : `not ready: ${s.why}`)}`;
  return `${head}\n${table(colors, [], rows)}`;
}

function statusText(colors: Colors, status: Status): string {
  const parts = status.services
    ? status.services.length
      ? status.services.map((s) => serviceTable(colors, s))
      : ['services: none (no schema of DATABASE_URL holds consumer offsets)']
    : [`services: ${colors.red('unknown')} (PostgreSQL is down)`];
  parts.push(
    table(
      colors,
      ['dependency', 'status', 'detail'],
      status.dependencies.map((d) => [
        d.name,
        d.decidesReadiness ? word(colors, d.status === 'ok', d.status) : d.status,
        d.detail,
      ]),
    ),
    `${word(colors, status.ready, status.ready ? 'ready' : 'not ready')}`,
  );
  return `${parts.join('\n\n')}\n`;
}

export function addStatusCommand(program: Command<[], { color: boolean }>): void {
  program
    .command('status')
    .description('services, their lag, dead letters, parked and held messages; the dependencies')
    .option('--json', 'one JSON object')
    .addHelpText('after', statusHelp)
    .action(async (options, command) => {
      const config = loadConfig(connectionEnv);
      const status = await gatherStatus(config);
      const { color } = command.optsWithGlobals();
      process.stdout.write(
        options.json
          ? jsonLines([status])
          : statusText(colorsFor(process.stdout, color !== false), status),
      );
      if (!status.ready) process.exitCode = exitCodes.dependency;
    });
}
