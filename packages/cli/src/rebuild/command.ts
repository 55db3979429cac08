import type { Command } from '@commander-js/extra-typings';
import { withTransaction } from '@shoal/db';
import { cliConnections, connectionsHelp, serviceSchema, withDatabase } from '../connections.js';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import { nonEmpty } from '../options.js';
import { canAsk, confirm, defaultActor, jsonLines, message, terminalAllows } from '../terminal.js';
import { loadServicePackage } from './declaration.js';
import { differencesTable, printPlan } from './output.js';
import { rebuildAndCompare } from './run.js';
import { recordSwap, swapSchemas, SwapRefused } from './swap.js';

/** `shoal rebuild <service>`: options, help, output and the swap; the rebuild itself is run.ts. */

const help = `
Rebuilds the service's read model from its input topics into a shadow schema and compares it with
the live one:
Services: grouping, regression, dedup, lifecycle (a package exporting rebuild.json).
  1. reads the live group's stored offsets in a snapshot of the live schema (held open); of a
     service of several consumer groups (lifecycle: decide and intake), each <group>.<name>'s, and
     every group is rebuilt up to its own;
  2. drops <schema>_rebuild if a former run left it, migrates it, gives the tables that declare
     liveIds the live ids as rows are inserted, and starts the service's own main in rebuild
     mode: a fresh Kafka consumer group from the earliest
     offsets, relay and dead-letter producer off (nothing is published), each partition applied
     up to exactly the live offset, and across topics in record-timestamp order (an entity change
     and a message naming the entity are applied in the order they were produced);
  3. compares every table the service declares (its rebuild.json) on natural keys: rows only in
     one schema, differing columns (wall-clock columns and ones whose value depends on timing
     are left out), and arrival-order ids (group ids, short ids) as a mapping, one to one.
The shadow schema is kept for inspection until the next run. With --swap and an empty diff, one
transaction gives the rebuilt schema the live arrival-order ids and timing-dependent columns and swaps the
schemas (the live one becomes <schema>_replaced); refused while the diff is not empty, or when the
live group moved past the snapshot (stop the service or let it idle first).

Run it with the service's environment (its SHOAL_TOPIC_NAMESPACE, SCHEMA_REGISTRY_URL and own
settings): the rebuild runs the service's code with it.

Examples:
  npx shoal rebuild grouping
  npx shoal rebuild grouping --json | jq 'select(.type == "difference")'
  npx shoal rebuild grouping --swap --reason "read model drifted after INC-42" --yes
  SHOAL_API_TOKENS=... npx shoal rebuild lifecycle    # with lifecycle's environment

${exitCodesHelp.replace('3    done, but some records were refused, invalid or different', '3    done, but the rebuilt model differs (a --swap was refused)')}

${connectionsHelp}`;

export function addRebuildCommand(program: Command<[], { color: boolean }>): void {
  program
    .command('rebuild')
    .description("rebuild a service's read model from its topics and compare it with the live one")
    .argument(
      '<service>',
      'grouping, regression, dedup or lifecycle (a package declaring rebuild.json)',
    )
    .option(
      '--group <group>',
      'the live consumer group (default SHOAL_CONSUMER_GROUP or shoal.<service>)',
    )
    .option('--swap', 'on an empty diff, swap the rebuilt schema in (one transaction)')
    .option('--reason <text>', 'why a swap, kept in shoal_cli.rebuild_swaps', nonEmpty)
    .option(
      '--actor <who>',
      'who swapped, kept in shoal_cli.rebuild_swaps',
      nonEmpty,
      defaultActor(),
    )
    .option('--dry-run', 'show the stop offsets and tables, start nothing, change nothing')
    .option('--yes', 'do not ask before a swap (required without a terminal)')
    .option(
      '--json',
      'JSON Lines: one {"type":"difference"} per difference, then {"type":"summary"}',
    )
    .addHelpText('after', help)
    .action(async (service, options, command) => {
      if (options.swap && !options.dryRun && !options.yes && !canAsk())
        throw new UsageError('--yes is required to --swap without a terminal to ask on');
      const { color } = command.optsWithGlobals();
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const servicePackage = await loadServicePackage(service);
      const { declaration } = servicePackage;
      const live = serviceSchema(service);
      const shadow = `${live}_rebuild`;
      const group = options.group ?? process.env.SHOAL_CONSUMER_GROUP ?? `shoal.${service}`;
      await withDatabase(DATABASE_URL, async (pool) => {
        const outcome = await rebuildAndCompare(pool, {
          service,
          servicePackage,
          live,
          shadow,
          group,
          databaseUrl: DATABASE_URL,
          brokers: KAFKA_BROKERS,
          dryRun: options.dryRun === true,
          animate: terminalAllows(process.stderr, color !== false),
        });
        if ('plan' in outcome) {
          printPlan(options.json === true, outcome.plan);
          message('dry run: nothing started, nothing changed');
          return;
        }
        const { stopAt, differences } = outcome;
        const summary = {
          type: 'summary',
          service,
          schema: live,
          rebuilt: shadow,
          group,
          stopAt,
          tables: declaration.tables.length,
          differences: differences.length,
          swapped: false as boolean,
          replaced: undefined as string | undefined,
        };
        const finish = () => {
          if (options.json)
            process.stdout.write(
              jsonLines([...differences.map((d) => ({ type: 'difference', ...d })), summary]),
            );
          else if (differences.length)
            process.stdout.write(`${differencesTable(differences, color !== false)}\n`);
        };
        if (differences.length) {
          finish();
          message(`${differences.length} differences between ${live} and the rebuild in ${shadow}`);
          if (options.swap) message('swap refused: the diff is not empty');
          process.exitCode = exitCodes.refused;
          return;
        }
        message(
          `no differences: ${live} equals its rebuild from the log (${declaration.tables.length} tables)`,
        );
        if (options.swap) {
          if (
            !options.yes &&
            !(await confirm(
              `Swap ${shadow} in for ${live} (the live one becomes ${live}_replaced)?`,
            ))
          ) {
            finish();
            message('nothing changed');
            process.exitCode = exitCodes.failed;
            return;
          }
          try {
            const { replaced } = await withTransaction(pool, async (tx) => {
              const result = await swapSchemas(tx, {
                declaration,
                live,
                rebuilt: shadow,
                group,
                stopAt,
              });
              await recordSwap(tx, {
                service,
                schema: live,
                replaced: result.replaced,
                actor: options.actor,
                reason: options.reason ?? null,
                stopAt,
              });
              return result;
            });
            Object.assign(summary, { swapped: true, replaced });
            message(`swapped: ${live} is the rebuilt model; the former one is ${replaced}`);
          } catch (error) {
            if (!(error instanceof SwapRefused)) throw error;
            message(`swap refused: ${error.message}`);
            process.exitCode = exitCodes.refused;
          }
        }
        finish();
      });
    });
}
