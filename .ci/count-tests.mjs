// Sums the tests of several `npm test` runs from vitest's JSON reports (SHOAL_TEST_REPORT) and
// prints one line per run on stderr, then the combined `N passed, N failed` alone on stdout.
// Usage: node .ci/count-tests.mjs <label> <exit status> <report file> [<label> <status> <file>]…
// A test file that failed before any of its tests ran (e.g. it did not load) counts as one failed
// test; so does a run that exited non-zero with nothing else failed (typecheck, lint, no report,
// an unhandled error), so the line never says 0 failed for a failed run. Each failed test is named,
// with the first line of its error, just above the totals: CI keeps only the tail of the output.
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 3 !== 0) {
  process.stderr.write('usage: count-tests.mjs <label> <exit status> <report file>…\n');
  process.exit(2);
}

function countRun(status, reportFile) {
  let report;
  try {
    report = JSON.parse(fs.readFileSync(reportFile, 'utf8'));
  } catch {
    const failed = status === 0 ? 0 : 1;
    return { passed: 0, failed, note: `no test report at ${reportFile}`, failures: [] };
  }
  const unloaded = report.testResults.filter(
    (file) => file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed'),
  ).length;
  let failed = report.numFailedTests + unloaded;
  const notes = unloaded > 0 ? [`${unloaded} test file(s) failed outside any test`] : [];
  if (status !== 0 && failed === 0) {
    failed = 1;
    notes.push(`npm test exited ${status} with no failed test`);
  }
  const failures = report.testResults.flatMap((file) => {
    const where = path.relative(process.cwd(), file.name);
    const tests = file.assertionResults.filter((t) => t.status === 'failed');
    if (file.status === 'failed' && tests.length === 0) {
      return [`${where}: ${firstLine(file.message)}`];
    }
    return tests.map((t) => `${where} > ${t.fullName}: ${firstLine(t.failureMessages?.[0])}`);
  });
  return { passed: report.numPassedTests, failed, note: notes.join('; '), failures };
}

function firstLine(text) {
  const line = (text ?? '').split('\n').find((l) => l.trim() !== '') ?? '(no message)';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

let passed = 0;
let failed = 0;
for (let i = 0; i < args.length; i += 3) {
  const [label, status, reportFile] = args.slice(i, i + 3);
  const run = countRun(Number(status), reportFile);
  passed += run.passed;
  failed += run.failed;
  const note = run.note ? ` (${run.note})` : '';
  for (const failure of run.failures) process.stderr.write(`${label} failed: ${failure}\n`);
  process.stderr.write(`${label}: ${run.passed} passed, ${run.failed} failed${note}\n`);
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
