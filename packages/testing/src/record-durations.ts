// `npm run test:durations -- <report.json>`: records each test file's duration from a vitest JSON
// report (e.g. SHOAL_TEST_REPORT's from a whole `npm test`) in durations.json, which orders a
// clean clone's run (slowest-first.ts). Run it after a whole run when files were added or have
// become much slower or faster; an out-of-date record only costs wall time, never a result.
import { readFileSync, writeFileSync } from 'node:fs';
import { durationKey, durationsFile, type Durations } from './slowest-first.js';

interface Report {
  testResults: { name: string; startTime: number; endTime: number }[];
}

const reportFile = process.argv[2];
if (!reportFile) {
  process.stderr.write('usage: npm run test:durations -- <vitest JSON report>\n');
  process.exit(2);
}
const report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
const durations: Durations = Object.fromEntries(
  report.testResults
    .map((file) => [durationKey(file.name), (file.endTime - file.startTime) / 1000] as const)
    .sort(([a, secondsA], [b, secondsB]) => secondsB - secondsA || a.localeCompare(b))
    .map(([file, seconds]) => [file, Math.round(seconds * 10) / 10]),
);
writeFileSync(durationsFile, `${JSON.stringify(durations, null, 2)}\n`);
process.stdout.write(`${Object.keys(durations).length} test files recorded in ${durationsFile}\n`);
