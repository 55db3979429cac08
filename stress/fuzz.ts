/**
 * `npm run fuzz`: bad messages of every kind, interleaved with good ones, into every consumer's
 * input topics while the real consumer runs; exits 1 when any message did not end as it must.
 */
import { formatTable, parseCli } from '@shoal/config/cli';
import { runFuzz, type FuzzReport } from './fuzz/engine.js';
import { fuzzTargets } from './fuzz/targets.js';

const usage = `Usage: npm run fuzz -- [--messages N] [--target NAME] [--stall-seconds S] [--json]

Starts each consumer (${Object.keys(fuzzTargets).join(', ')}) as a child process, on topics and a
database of its own, and sends into its input topics N messages (default 10000) cycling through
every bad kind — random bytes, empty and null values, a frame that is not JSON, a foreign schema
id, every payload its schema refuses, integers beyond 2^53, extreme strings and numbers in every
field, references to deleted and never announced entities — each followed by a good one on another
key. Extreme values the consumer can store must be applied; every other bad message dead-lettered.
Then messages naming entities announced only after them (held, or parked on their key behind a held
one) and the announcements: each must be applied once, in order on its key. Then checks that every
partition moved to its end (offsets stored in PostgreSQL reach the high watermarks) and nothing is
left held or parked, each bad message is in its topic's .dlq exactly once with its reason, the
processed ledger holds exactly the applied messages, and the consumer's read model and events
count each applied one once.

  --messages N        messages of the bad kinds, and as many good ones (default 10000)
  --target NAME       one consumer only
  --stall-seconds S   stop waiting when nothing moved for S seconds (default 60)
  --json              the report as JSON on stdout

Needs the local stack (npm run stack -- up). Progress on stderr every 10 s.
Exit codes: 0 every check passed; 1 a check failed; 2 bad usage.

Example: npm run fuzz -- --messages 2000
`;
const { values } = parseCli(usage, {
  messages: { type: 'string' },
  target: { type: 'string' },
  'stall-seconds': { type: 'string' },
  json: { type: 'boolean' },
});
const messages = Number(values.messages ?? 10_000);
const stallSeconds = Number(values['stall-seconds'] ?? 60);
const names = values.target ? [values.target] : Object.keys(fuzzTargets);
if (!Number.isInteger(messages) || messages < 1 || !(stallSeconds > 0)) {
  process.stderr.write(`--messages and --stall-seconds take positive numbers\n\n${usage}`);
  process.exit(2);
}
if (names.some((n) => !fuzzTargets[n])) {
  process.stderr.write(`unknown --target ${values.target}\n\n${usage}`);
  process.exit(2);
}

const reports: FuzzReport[] = [];
for (const name of names) {
  const report = await runFuzz(fuzzTargets[name]!, {
    messages,
    stallSeconds,
    log: (line) => process.stderr.write(`[${name}] ${line}\n`),
  });
  reports.push(report);
  if (values.json) continue;
  process.stdout.write(
    `\n${name}: ${report.sent} messages, ${report.deadLettered} of them to be dead-lettered, the rest applied (${report.late.sent} sent before their entity was announced: ${report.late.held} held, ${report.late.parked} parked); ${report.seconds} s\n\n`,
  );
  process.stdout.write(
    `${formatTable(
      report.kinds.map((k) => ({
        topic: k.topic,
        kind: k.kind,
        expected: k.expect,
        sent: k.sent,
        as_expected: k.ok,
        first_difference: k.wrong[0] ?? '',
      })),
    )}\n\n`,
  );
  for (const check of report.checks)
    process.stdout.write(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.name}: ${check.detail}\n`);
}
if (values.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
const ok = reports.every((r) => r.ok);
(values.json ? process.stderr : process.stdout).write(
  ok ? '\nOK: every message ended as it must\n' : '\nFAILED: see above\n',
);
process.exit(ok ? 0 : 1);
