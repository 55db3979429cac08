import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { cliConnections, connectionsHelp } from '../connections.js';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import {
  canAsk,
  colorsFor,
  confirm,
  defaultActor,
  jsonLines,
  message,
  table,
} from '../terminal.js';
import { isWholeNumber, nonEmpty, wholeNumber } from '../options.js';
import { listOffsets, type OffsetRow } from './list.js';
import { applyReset, planReset, type ResetPlan, type ResetTarget } from './reset.js';

/** `shoal offsets <verb>`: the options, help texts and output of the offsets commands. */

const resetTarget = (value: string): ResetTarget => {
  if (value === 'earliest' || value === 'latest') return value;
  if (isWholeNumber(value)) return Number(value);
  throw new InvalidArgumentError('expected earliest, latest or an offset (a whole number).');
};

const dash = (value: number | string | null) => (value === null ? '-' : value);

function offsetsTable(rows: OffsetRow[], colorOption: boolean): string {
  const colors = colorsFor(process.stdout, colorOption);
  return table(
    colors,
    ['schema', 'group', 'topic', 'partition', 'next offset', 'high watermark', 'lag', 'halted'],
    rows.map((r) => [
      r.schema,
      r.group,
      r.topic,
      r.partition,
      dash(r.nextOffset),
      dash(r.highWatermark),
      r.lag !== null && r.lag < 0 ? colors.red(r.lag) : dash(r.lag),
      r.halted ? colors.red(`since ${r.haltedAt}: ${r.haltedReason ?? ''}`) : 'no',
    ]),
  );
}

function describeReset(plan: ResetPlan): string {
  const target = typeof plan.to === 'number' ? '' : ` (${plan.to})`;
  return (
    `group ${plan.group}, ${plan.topic} partition ${plan.partition} in schema ${plan.schema}: ` +
    `next offset ${dash(plan.fromOffset)} -> ${plan.toOffset}${target}` +
    (plan.halted ? ', halt cleared' : '')
  );
}

const listHelp = `
Columns: the stored next offset (- before the group applied anything), Kafka's high watermark,
lag = high watermark - next offset (negative: PostgreSQL is ahead of the log, e.g. after Kafka
was reset), and whether the runtime halted the partition, since when and why.

Examples:
  npx shoal offsets list
  npx shoal offsets list --service grouping --json | jq 'select(.halted)'

${exitCodesHelp}

${connectionsHelp}`;

const resetHelp = `
In one transaction: records the reset in offset_resets (group, topic, partition, from, to, actor,
reason) and sets the stored next offset to the target, clearing the partition's halt and the
identity of its last applied record. earliest and latest are Kafka's log start and high
watermark now; an offset must lie between them. On a terminal it asks first; elsewhere --yes is
required.

Examples:
  npx shoal offsets reset --service grouping --group grouping --topic shoal.occurrences.v1 \\
    --partition 3 --to earliest --reason "Kafka data reset on 2026-11-30" --dry-run
  npx shoal offsets reset --service grouping --group grouping --topic shoal.occurrences.v1 \\
    --partition 3 --to 1200 --reason "skip the poisoned range, see INC-42" --yes

${exitCodesHelp}

${connectionsHelp}`;

export function addOffsetsCommand(program: Command<[], { color: boolean }>): void {
  const offsets = program
    .command('offsets')
    .description('consumer offsets: where each consumer group is, and moving it')
    .addHelpText(
      'after',
      `
Examples:
  npx shoal offsets list
  npx shoal offsets reset --help`,
    );

  offsets
    .command('list')
    .description('stored consumer offsets beside Kafka high watermarks, lag and halts')
    .option(
      '--service <name>',
      "only this service's schema (default: every schema holding offsets)",
    )
    .option('--json', 'JSON Lines: one object per partition')
    .addHelpText('after', listHelp)
    .action(async (options, command) => {
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const rows = await listOffsets({
        databaseUrl: DATABASE_URL,
        brokers: KAFKA_BROKERS,
        service: options.service,
      });
      if (rows.length === 0) message('no consumer offsets stored');
      const { color } = command.optsWithGlobals();
      process.stdout.write(
        options.json ? jsonLines(rows) : `${offsetsTable(rows, color !== false)}\n`,
      );
    });

  offsets
    .command('reset')
    .description("move a consumer group's stored offset of one partition, and clear its halt")
    .requiredOption('--service <name>', 'the service whose schema holds the offset')
    .requiredOption('--group <group>', 'consumer group')
    .requiredOption('--topic <topic>', 'topic')
    .requiredOption('--partition <n>', 'partition', wholeNumber)
    .requiredOption('--to <earliest|latest|offset>', 'the new next offset', resetTarget)
    .requiredOption('--reason <text>', 'why, kept in offset_resets', nonEmpty)
    .option('--actor <who>', 'who, kept in offset_resets', nonEmpty, defaultActor())
    .option('--dry-run', 'show what would change, change nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .option('--json', 'the result as one JSON object')
    .addHelpText('after', resetHelp)
    .action(async (options) => {
      const ask = !options.dryRun && !options.yes;
      if (ask && !canAsk())
        throw new UsageError('--yes is required to reset without a terminal to ask on');
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const connections = { databaseUrl: DATABASE_URL, brokers: KAFKA_BROKERS };
      const { service, group, topic, partition, to, actor, reason } = options;
      const plan = await planReset(
        { service, group, topic, partition, to, actor, reason },
        connections,
      );
      const print = (result: ResetPlan & ({ dryRun: true } | { resetId: number })) =>
        process.stdout.write(options.json ? jsonLines([result]) : `${describeReset(result)}\n`);
      if (options.dryRun) {
        print({ ...plan, dryRun: true });
        message('dry run: nothing changed');
        return;
      }
      if (ask && !(await confirm(`Reset ${describeReset(plan)}?`))) {
        message('nothing changed');
        process.exitCode = exitCodes.failed;
        return;
      }
      const done = await applyReset(plan, connections);
      print(done);
      message(`reset recorded in offset_resets (id ${done.resetId}) by ${done.actor}`);
    });
}
