import { createInterface } from 'node:readline';
import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { DEFAULT_KEY_OPTIONS, explain, parseKeyOptions, type KeyOptions } from '@shoal/dedup-keys';
import { exitCodes, exitCodesHelp } from '../exit.js';
import { explainLine } from './explain.js';

/** `shoal dedup <verb>`: explain (pure, no server) and the operators' merge and split commands. */

const keyOptions = (value: string): KeyOptions => {
  try {
    return parseKeyOptions(value);
  } catch (error) {
    throw new InvalidArgumentError(`${(error as Error).message}.`);
  }
};

const explainHelp = `
Prints what dedup makes of a report: one JSON line {"normalised", "key", "parts"} — the message
with its variable parts as placeholders (<int>, <uuid>, <date>, <ip>, …), the dedup key (null
when every counted part is empty) and every normalised part (message, top stack frames without
line numbers, component, route). Two reports are joined when their keys are equal. It runs the
same pure function the dedup service does; no database or broker is needed.

With a message argument, that message is explained. Without one, stdin is read as JSON Lines,
one case per line: {"message": "…", "component"?: "…", "route"?: "…", "stack_frames"?: ["…"]};
each gets its answer line, in order. A bad line gets {"error", "field", "line"} instead, the
rest are still answered, and the exit code is 3. Blank lines are skipped.

--parts chooses what the key counts (dedup's DEDUP_KEY_PARTS for a project), with an optional
frame count: message,stack_frames:3,component,route (the default).

Examples:
  npx shoal dedup explain "Order 1234 not found for bob@example.com"
  printf '%s\\n' '{"message":"timeout after 30ms","route":"/api/users/7"}' | npx shoal dedup explain
  npx shoal dedup explain --parts message "connect ECONNREFUSED 10.0.0.7:5432"

${exitCodesHelp}`;

async function explainStdin(options: KeyOptions): Promise<void> {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let number = 0;
  for await (const text of lines) {
    number += 1;
    if (text.trim() === '') continue;
    const result = explainLine(text, number, options);
    if ('error' in result) process.exitCode = exitCodes.refused;
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

export function addDedupCommand(program: Command<[], { color: boolean }>): void {
  const dedup = program
    .command('dedup')
    .description('dedup: why reports were or were not joined; merging and splitting incidents')
    .addHelpText(
      'after',
      `
Examples:
  npx shoal dedup explain "Order 1234 not found"
  npx shoal dedup explain --help`,
    );

  dedup
    .command('explain')
    .description('normalise a report and show its dedup key (argument, or JSON Lines on stdin)')
    .argument('[message]', 'the message to explain; without it, JSON Lines cases on stdin')
    .option('--parts <parts>', 'what the key counts, e.g. message,stack_frames:3', keyOptions)
    .addHelpText('after', explainHelp)
    .action(async (message, opts) => {
      const options = opts.parts ?? DEFAULT_KEY_OPTIONS;
      if (message !== undefined)
        process.stdout.write(`${JSON.stringify(explain({ message }, options))}\n`);
      else await explainStdin(options);
    });
}
