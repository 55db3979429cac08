#!/usr/bin/env -S node --import tsx --conditions=shoal-source
// The `shoal` bin: `npx shoal <noun> <verb>` from the repository root, run from the TypeScript
// sources like every other entry point (no build step). Usage errors exit 2, every other error
// goes through exitCodeOf, and nothing it prints carries the database password.
import { Command, CommanderError } from '@commander-js/extra-typings';
import { connectionsHelp, redactSecrets } from './connections.js';
import { exitCodeOf, exitCodes, exitCodesHelp } from './exit.js';
import { nounOf, nouns } from './nouns.js';

process.on('SIGINT', () => {
  process.stderr.write('\ninterrupted\n');
  process.exit(exitCodes.interrupted);
});

const program = new Command('shoal')
  .description("Shoal's operator command: shoal <noun> <verb> [options]")
  .option('--no-color', 'no colour, even on a terminal (NO_COLOR and TERM=dumb also turn it off)')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(redactSecrets(text)) })
  .showHelpAfterError('(add --help for usage and examples)')
  .addHelpText(
    'after',
    `
Examples:
  npx shoal status
  npx shoal offsets list
  npx shoal offsets reset --help
  npx shoal dlq list --topic occurrences
  npx shoal regression explain < cases.jsonl
  npx shoal orphans report
  npx shoal dedup explain "Order 1234 not found"
  npx shoal import ./legacy-reports --project 7 --dry-run
  npx shoal rebuild grouping

Data goes to stdout (--json for scripts), messages to stderr. Commands that change something
take --dry-run and --actor (default user@host), and ask first on a terminal (--yes otherwise).

${exitCodesHelp}

${connectionsHelp}`,
  );

try {
  // subcommands made through program.command() inherit exitOverride and the output settings
  const noun = nounOf(process.argv.slice(2));
  const adds = await Promise.all(
    (noun ? [noun] : Object.keys(nouns)).map((name) => nouns[name]!()),
  );
  for (const add of adds) add(program);
  await program.parseAsync();
  process.exit(process.exitCode ?? exitCodes.ok);
} catch (error) {
  if (error instanceof CommanderError) {
    const shown = error.code === 'commander.helpDisplayed' || error.code === 'commander.version';
    process.exit(shown ? exitCodes.ok : exitCodes.usage);
  }
  process.stderr.write(`error: ${redactSecrets((error as Error).message)}\n`);
  process.exit(await exitCodeOf(error));
}
