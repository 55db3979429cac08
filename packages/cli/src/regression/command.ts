import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { defaultDecideOptions } from '@shoal/regression-rules';
import { exitCodes, exitCodesHelp } from '../exit.js';
import { explainAll } from './explain.js';

/** `shoal regression <verb>`: the regression service's decision, offline. */

const nonNegative = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError('expected a non-negative number.');
  return n;
};

const explainHelp = `
Reads cases on stdin, JSON Lines (one case per line) or one JSON array, and prints one decision
per case, in order, as a JSON line: {"regressed", "decided_by", "why"}. The regression service
calls the same function (services/regression/README.md, "The decision"). A case:

  {"releases": [{"version": "pkg@1.2.0", "date_added": "2026-10-01T00:00:00Z",
                 "commits": ["<sha>"], "deleted": false}, ...],
   "group": {"status": "resolved", "resolved_at": "<ISO 8601>",
             "resolution": {"type": "in_release" | "in_next_release" | "in_commit" | "now",
                            "release": "<version>" | null, "current_release_version": "<version>" | null,
                            "commit": "<sha>" | null, "resolved_at": "<ISO 8601>"}},
   "event": {"release": "<version>" | null, "timestamp": "<ISO 8601>"}}

An ignored group: "group": {"status": "ignored", "ignore": {"until_occurrences": N, "until":
"<ISO>", "until_escalating": true}, "occurrences_since_ignored": N, "rate_before_per_hour": N,
"occurrences_last_hour": N}. Unknown keys are ignored. A case that is not JSON or lacks a field
gets {"line": N, "error": "<field>: <what is wrong>"}; the others are still decided (exit 3).

decided_by: semver | date | no_release | timestamp_before_resolution | grace | release_unknown |
commit_pending | not_resolved | ignore_count | ignore_until | escalating | ignored

Examples:
  echo '{"releases":[],"group":{"status":"resolved","resolution":{"type":"in_release","release":"web@1.2.0","resolved_at":"2026-11-01T10:00:00Z"}},"event":{"release":"web@1.10.0","timestamp":"2026-11-02T00:00:00Z"}}' \\
    | npx shoal regression explain
  npx shoal regression explain --grace-seconds 60 < cases.jsonl

${exitCodesHelp}`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function addRegressionCommand(program: Command) {
  const regression = program
    .command('regression')
    .description('the regression decision: would this occurrence reopen this group?');
  regression
    .command('explain')
    .description('decide cases read on stdin (JSON Lines), one JSON line each')
    .option(
      '--grace-seconds <n>',
      'resolved now: occurrences this soon after do not regress',
      nonNegative,
      defaultDecideOptions.graceSeconds,
    )
    .option(
      '--escalation-multiple <x>',
      'ignored until escalating: the last hour must exceed x times the rate before',
      nonNegative,
      defaultDecideOptions.escalationMultiple,
    )
    .addHelpText('after', explainHelp)
    .action(async (options) => {
      const answers = explainAll(await readStdin(), {
        graceSeconds: options.graceSeconds,
        escalationMultiple: options.escalationMultiple,
      });
      process.stdout.write(answers.map((a) => `${JSON.stringify(a)}\n`).join(''));
      if (answers.some((a) => 'error' in a)) process.exitCode = exitCodes.refused;
    });
}
