import { Option, type Command } from '@commander-js/extra-typings';
import { cliConnections } from '../connections.js';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import { wholeNumber, nonEmpty } from '../options.js';
import {
  canAsk,
  colorsFor,
  confirm,
  defaultActor,
  jsonLines,
  message,
  table,
} from '../terminal.js';
import { dedupCleanups, findDedupOrphans, publishDedupCleanups } from './dedup.js';
import { findGroupingOrphans, groupingCleanups, publishGroupingCleanups } from './grouping.js';
import { findLifecycleOrphans, lifecycleCleanups, publishLifecycleCleanups } from './lifecycle.js';
import { cleanupCommands, findOrphans, publishCleanups } from './regression.js';

/** `shoal orphans <verb>`: records whose referenced entity is gone or never came, per service. */

const DEFAULT_DEADLINE_SECONDS = 600; // regression's SHOAL_REGRESSION_CONFIRM_DEADLINE_SECONDS
const DEFAULT_BATCH_SIZE = 500;

const orphansHelp = `
Orphans, by --service (default regression); report reads the service's schema (read only); cleanup
publishes commands on the topic the service owns, which it applies in its own transaction, removing
each record still an orphan then with an audit row in <service>.orphan_cleanups (who, why, the
record) and recording a refusal (not_orphaned) for any that is not.
  regression  a record whose group was deleted (group_deleted), or a proposal grouping has not
              answered within --deadline-seconds (unconfirmed; default ${DEFAULT_DEADLINE_SECONDS}, regression's
              SHOAL_REGRESSION_CONFIRM_DEADLINE_SECONDS); one command per group on
              shoal.regression-commands.v1.
  grouping    a live group of a deleted project (deleted as a group deletion is); an occurrence held
              for noise or the rate limit of a deleted project (removed); a message held for an
              entity deleted since (its deadline brought to now: the runtime dead-letters it); a key
              parked behind a head dead-lettered stale_reference for an entity still deleted
              (expired now: the runtime dead-letters its parked messages in order). Commands of at
              most --batch-size records of one kind on shoal.grouping-commands.v1.
  dedup       a member of a deleted project (a tombstone since the cascade; the project's tombstone
              keeps later messages naming it stale). Commands of at most --batch-size members of one
              project on shoal.dedup-commands.v1.
  lifecycle   an issue not tombstoned whose group was deleted (group_deleted: its delete command
              dead-lettered, discarded or parked) or whose project was (project_deleted: hidden);
              a key parked behind a head dead-lettered stale_reference or unknown_reference for an
              issue or group still deleted (expired now: the runtime dead-letters its parked
              messages in order). Each names its issue; cleanup_orphans system commands of at most
              --batch-size records of one issue on shoal.lifecycle-commands.v1 (keyed
              orphans:<issue>): the issue tombstoned as a deletion is (event deleted on
              shoal.lifecycle.v1, its history kept). Messages held for a deleted issue or group are
              none: lifecycle's re-drive dead-letters them (stale_reference).
Cleanup needs Kafka and the registry as well as PostgreSQL.

Examples:
  npx shoal orphans report
  npx shoal orphans report --service grouping --json
  npx shoal orphans cleanup --service dedup --dry-run
  npx shoal orphans report --service lifecycle
  npx shoal orphans cleanup --yes --actor ops@example --reason "groups deleted upstream"

${exitCodesHelp}

Environment:
  DATABASE_URL           PostgreSQL (default postgres://postgres@127.0.0.1:5432/shoal)
  KAFKA_BROKERS          cleanup: Kafka, comma-separated host:port (default 127.0.0.1:9092)
  SCHEMA_REGISTRY_URL    cleanup: the schema registry (default http://127.0.0.1:8081/apis/ccompat/v7)
  SHOAL_TOPIC_NAMESPACE  cleanup: prefix of the topic names (default none)`;

interface Options {
  deadlineSeconds: number;
  batchSize: number;
  actor: string;
  reason?: string;
}

/** What `orphans` needs of a service: find its orphans, show them, have it clean them up. */
interface OrphanSource {
  find(databaseUrl: string, options: Options): Promise<object[]>;
  headers: string[];
  row(orphan: never): (string | number)[];
  /** Publishes the cleanup commands; returns how many and on which topic. */
  cleanup(orphans: never[], options: Options): Promise<{ commands: number; topic: string }>;
}

const published = async <C>(commands: C[], publish: (c: C[]) => Promise<string>) => ({
  commands: commands.length,
  topic: await publish(commands),
});

const sources: Record<string, OrphanSource> = {
  regression: {
    find: (url, o) => findOrphans(url, o.deadlineSeconds),
    headers: ['record', 'group', 'project', 'why', 'state', 'proposed at', 'group deleted at'],
    row: (o: Awaited<ReturnType<typeof findOrphans>>[number]) => [
      o.id,
      o.group_id,
      o.project_id,
      o.why,
      o.state,
      o.proposed_at,
      o.detached_at ?? '-',
    ],
    cleanup: (found: Awaited<ReturnType<typeof findOrphans>>, o) =>
      published(cleanupCommands(found, o), publishCleanups),
  },
  grouping: {
    find: (url) => findGroupingOrphans(url),
    headers: ['kind', 'id', 'names', 'why', 'since'],
    row: (o: Awaited<ReturnType<typeof findGroupingOrphans>>[number]) => [
      o.kind,
      o.id,
      o.entity,
      o.why,
      o.since,
    ],
    cleanup: (found: Awaited<ReturnType<typeof findGroupingOrphans>>, o) =>
      published(groupingCleanups(found, o), publishGroupingCleanups),
  },
  dedup: {
    find: (url) => findDedupOrphans(url),
    headers: ['group', 'project', 'why', 'since'],
    row: (o: Awaited<ReturnType<typeof findDedupOrphans>>[number]) => [
      o.group_id,
      o.project_id,
      o.why,
      o.since,
    ],
    cleanup: (found: Awaited<ReturnType<typeof findDedupOrphans>>, o) =>
      published(dedupCleanups(found, o), publishDedupCleanups),
  },
  lifecycle: {
    find: (url) => findLifecycleOrphans(url),
    headers: ['issue', 'kind', 'id', 'names', 'why', 'since'],
    row: (o: Awaited<ReturnType<typeof findLifecycleOrphans>>[number]) => [
      o.issue_id,
      o.kind,
      o.id,
      o.entity,
      o.why,
      o.since,
    ],
    cleanup: (found: Awaited<ReturnType<typeof findLifecycleOrphans>>, o) =>
      published(lifecycleCleanups(found, o), publishLifecycleCleanups),
  },
};

const serviceOption = () =>
  new Option('--service <name>', 'whose orphans')
    .choices(Object.keys(sources) as ['regression', 'grouping', 'dedup', 'lifecycle'])
    .default('regression' as const);

const orphansTable = (source: OrphanSource, rows: object[], colorOption: boolean) =>
  table(
    colorsFor(process.stdout, colorOption),
    source.headers,
    rows.map((r) => source.row(r as never).map(String)),
  );

export function addOrphansCommand(program: Command<[], { color: boolean }>): void {
  const orphans = program
    .command('orphans')
    .description('records whose entity is gone or that were never confirmed: report, clean up')
    .addHelpText('after', orphansHelp);

  orphans
    .command('report')
    .description("list a service's orphaned records")
    .addOption(serviceOption())
    .option(
      '--deadline-seconds <n>',
      'regression: a proposal older than this is unconfirmed',
      wholeNumber,
      DEFAULT_DEADLINE_SECONDS,
    )
    .option('--json', 'JSON Lines: one object per record')
    .addHelpText('after', orphansHelp)
    .action(async (options, command) => {
      const source = sources[options.service]!;
      const rows = await source.find(cliConnections().DATABASE_URL, {
        ...options,
        batchSize: DEFAULT_BATCH_SIZE,
        actor: '',
      });
      if (!rows.length) message('no orphans');
      const { color } = command.optsWithGlobals();
      if (options.json) process.stdout.write(jsonLines(rows));
      else if (rows.length)
        process.stdout.write(`${orphansTable(source, rows, color !== false)}\n`);
    });

  orphans
    .command('cleanup')
    .description(
      'have the service remove its orphaned records (commands on a topic it owns), an audit row each',
    )
    .addOption(serviceOption())
    .option(
      '--deadline-seconds <n>',
      'regression: a proposal older than this is unconfirmed',
      wholeNumber,
      DEFAULT_DEADLINE_SECONDS,
    )
    .option(
      '--batch-size <n>',
      'grouping, dedup, lifecycle: records per command (each applied in one transaction)',
      wholeNumber,
      DEFAULT_BATCH_SIZE,
    )
    .option('--actor <who>', 'who, kept in orphan_cleanups', nonEmpty, defaultActor())
    .option('--reason <why>', 'why, kept in orphan_cleanups', nonEmpty)
    .option('--dry-run', 'list what would be removed, publish nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .option('--json', 'JSON Lines: one object per record')
    .addHelpText('after', orphansHelp)
    .action(async (options, command) => {
      if (options.batchSize < 1) throw new UsageError('--batch-size must be at least 1');
      const ask = !options.dryRun && !options.yes;
      if (ask && !canAsk())
        throw new UsageError('--yes is required to clean up without a terminal to ask on');
      const { color } = command.optsWithGlobals();
      const source = sources[options.service]!;
      const found = await source.find(cliConnections().DATABASE_URL, options);
      process.stdout.write(
        options.json
          ? jsonLines(found)
          : found.length
            ? `${orphansTable(source, found, color !== false)}\n`
            : '',
      );
      if (options.dryRun || !found.length) {
        message(
          found.length ? `dry run: ${found.length} orphans, nothing published` : 'no orphans',
        );
        return;
      }
      if (ask && !(await confirm(`Remove ${found.length} orphaned ${options.service} records?`))) {
        message('nothing published');
        process.exitCode = exitCodes.failed;
        return;
      }
      const { commands, topic } = await source.cleanup(found as never[], options);
      message(
        `${commands} cleanup commands (${found.length} records) published on ${topic} by ${options.actor}: ${options.service} removes each record still an orphan, with a ${options.service}.orphan_cleanups row`,
      );
    });
}
