import { createInterface } from 'node:readline';
import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { DEFAULT_KEY_OPTIONS, explain, parseKeyOptions, type KeyOptions } from '@shoal/dedup-keys';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import { nonEmpty, wholeNumber } from '../options.js';
import { canAsk, confirm, defaultActor, message } from '../terminal.js';
import { dedupCommand, publishDedupCommand } from './commands.js';
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

const id = (value: string): number => {
  const n = wholeNumber(value);
  if (n === 0) throw new InvalidArgumentError('expected an id, 1 or more.');
  return n;
};

const commandHelp = (example: string) => `
Publishes the command on shoal.dedup-commands.v1 (keyed by incident id); the dedup service
applies it, records it as an event on shoal.incidents.v1, or refuses it (an unknown or merged
incident, a group that is not a live member, a split of an incident's only member) with the
reason in its message_rejections. The command is printed on stdout as JSON. On a terminal it
asks first; without one --yes is required. --dry-run prints the command and publishes nothing.

Examples:
${example}

${exitCodesHelp}

Environment:
  KAFKA_BROKERS          Kafka, comma-separated host:port (default 127.0.0.1:9092)
  SCHEMA_REGISTRY_URL    the schema registry (default http://127.0.0.1:8081/apis/ccompat/v7)
  SHOAL_TOPIC_NAMESPACE  prefix of the topic names (default none)`;

interface ChangeOptions {
  actor: string;
  reason?: string;
  dryRun?: true;
  yes?: true;
}

async function send(
  what: string,
  fields: Parameters<typeof dedupCommand>[0],
  options: ChangeOptions,
): Promise<void> {
  const command = dedupCommand(fields);
  if (options.dryRun) {
    process.stdout.write(`${JSON.stringify(command)}\n`);
    message(`dry run: would ${what}; nothing published`);
    return;
  }
  if (!options.yes) {
    if (!canAsk())
      throw new UsageError(`--yes is required to ${what} without a terminal to ask on`);
    if (!(await confirm(`${what}?`))) {
      message('nothing published');
      process.exitCode = exitCodes.failed;
      return;
    }
  }
  const topic = await publishDedupCommand(command);
  process.stdout.write(`${JSON.stringify(command)}\n`);
  message(`published on ${topic}: dedup will ${what}, or record why not`);
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
  npx shoal dedup merge --help
  npx shoal dedup split --help`,
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

  dedup
    .command('merge')
    .description('merge one incident into another (its members and keys move)')
    .requiredOption('--into <incident>', 'the incident that stays', id)
    .requiredOption('--from <incident>', 'the incident merged into it', id)
    .option('--reason <text>', 'why, kept in the incident_merged event', nonEmpty)
    .option('--actor <who>', 'who asks (default user@host)', nonEmpty, defaultActor())
    .option('--dry-run', 'print the command, publish nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .addHelpText(
      'after',
      commandHelp('  npx shoal dedup merge --into 17 --from 23 --reason "same outage" --yes'),
    )
    .action((o) =>
      send(
        `merge incident ${o.from} into incident ${o.into}`,
        {
          command: 'merge',
          incident_id: o.into,
          from_incident_id: o.from,
          actor: o.actor,
          reason: o.reason,
        },
        o,
      ),
    );

  dedup
    .command('split')
    .description('split a group out of its incident, for good (its key never links it again)')
    .requiredOption('--incident <incident>', 'the incident the group leaves', id)
    .requiredOption('--group <group>', 'the group to split out', id)
    .option('--reason <text>', 'why, kept in the incident events', nonEmpty)
    .option('--actor <who>', 'who asks (default user@host)', nonEmpty, defaultActor())
    .option('--dry-run', 'print the command, publish nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .addHelpText(
      'after',
      commandHelp(
        '  npx shoal dedup split --incident 17 --group 1002 --reason "another root cause" --yes',
      ),
    )
    .action((o) =>
      send(
        `split group ${o.group} out of incident ${o.incident}`,
        {
          command: 'split',
          incident_id: o.incident,
          group_id: o.group,
          actor: o.actor,
          reason: o.reason,
        },
        o,
      ),
    );
}
