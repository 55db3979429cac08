import type { Command } from '@commander-js/extra-typings';
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
import { cleanupCommands, findOrphans, publishCleanups, type Orphan } from './regression.js';

/** `shoal orphans <verb>`: records whose referenced entity is gone or never came (regression's, for now). */

const DEFAULT_DEADLINE_SECONDS = 600; // regression's SHOAL_REGRESSION_CONFIRM_DEADLINE_SECONDS

const orphansHelp = `
Orphans: a regression record whose group was deleted (group_deleted), or a proposed regression
grouping has not answered within --deadline-seconds (unconfirmed; default ${DEFAULT_DEADLINE_SECONDS},
regression's SHOAL_REGRESSION_CONFIRM_DEADLINE_SECONDS). report reads schema regression (read only).
cleanup publishes one cleanup_orphans command per group on shoal.regression-commands.v1; the
regression service removes each record still an orphan when it applies the command, with an audit
row in regression.orphan_cleanups (who, why, the record), and records a refusal (not_orphaned) for
any that was answered meanwhile. Needs Kafka and the registry as well as PostgreSQL.

Examples:
  npx shoal orphans report
  npx shoal orphans cleanup --dry-run
  npx shoal orphans cleanup --yes --actor ops@example --reason "groups deleted upstream"

${exitCodesHelp}

Environment:
  DATABASE_URL           PostgreSQL (default postgres://postgres@127.0.0.1:5432/shoal)
  KAFKA_BROKERS          cleanup: Kafka, comma-separated host:port (default 127.0.0.1:9092)
  SCHEMA_REGISTRY_URL    cleanup: the schema registry (default http://127.0.0.1:8081/apis/ccompat/v7)
  SHOAL_TOPIC_NAMESPACE  cleanup: prefix of the topic names (default none)`;

function orphansTable(rows: Orphan[], colorOption: boolean): string {
  return table(
    colorsFor(process.stdout, colorOption),
    ['record', 'group', 'project', 'why', 'state', 'proposed at', 'group deleted at'],
    rows.map((o) => [
      o.id,
      o.group_id,
      o.project_id,
      o.why,
      o.state,
      o.proposed_at,
      o.detached_at ?? '-',
    ]),
  );
}

export function addOrphansCommand(program: Command<[], { color: boolean }>): void {
  const orphans = program
    .command('orphans')
    .description('records whose group is gone or that were never confirmed: report, clean up')
    .addHelpText('after', orphansHelp);

  orphans
    .command('report')
    .description('list the orphaned regression records')
    .option(
      '--deadline-seconds <n>',
      'a proposal older than this is unconfirmed',
      wholeNumber,
      DEFAULT_DEADLINE_SECONDS,
    )
    .option('--json', 'JSON Lines: one object per record')
    .addHelpText('after', orphansHelp)
    .action(async (options, command) => {
      const rows = await findOrphans(cliConnections().DATABASE_URL, options.deadlineSeconds);
      if (!rows.length) message('no orphans');
      const { color } = command.optsWithGlobals();
      if (options.json) process.stdout.write(jsonLines(rows));
      else if (rows.length) process.stdout.write(`${orphansTable(rows, color !== false)}\n`);
    });

  orphans
    .command('cleanup')
    .description(
      'have regression remove the orphaned records (commands on shoal.regression-commands.v1), an audit row each',
    )
    .option(
      '--deadline-seconds <n>',
      'a proposal older than this is unconfirmed',
      wholeNumber,
      DEFAULT_DEADLINE_SECONDS,
    )
    .option('--actor <who>', 'who, kept in orphan_cleanups', nonEmpty, defaultActor())
    .option('--reason <why>', 'why, kept in orphan_cleanups', nonEmpty)
    .option('--dry-run', 'list what would be removed, publish nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .option('--json', 'JSON Lines: one object per record')
    .addHelpText('after', orphansHelp)
    .action(async (options, command) => {
      const ask = !options.dryRun && !options.yes;
      if (ask && !canAsk())
        throw new UsageError('--yes is required to clean up without a terminal to ask on');
      const { color } = command.optsWithGlobals();
      const found = await findOrphans(cliConnections().DATABASE_URL, options.deadlineSeconds);
      process.stdout.write(
        options.json
          ? jsonLines(found)
          : found.length
            ? `${orphansTable(found, color !== false)}\n`
            : '',
      );
      if (options.dryRun || !found.length) {
        message(
          found.length ? `dry run: ${found.length} orphans, nothing published` : 'no orphans',
        );
        return;
      }
      if (ask && !(await confirm(`Remove ${found.length} orphaned regression records?`))) {
        message('nothing published');
        process.exitCode = exitCodes.failed;
        return;
      }
      const commands = cleanupCommands(found, options);
      const topic = await publishCleanups(commands);
      message(
        `${commands.length} cleanup commands (${found.length} records) published on ${topic} by ${options.actor}: regression removes each record still an orphan, with a regression.orphan_cleanups row`,
      );
    });
}
