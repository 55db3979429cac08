// Sums the tests of several `npm test` runs from vitest's JSON reports (SHOAL_TEST_REPORT) and
// prints one line per run on stderr, then the combined `N passed, N failed` alone on stdout.
// Usage: node .ci/count-tests.mjs <label> <exit status> <report file> [<label> <status> <file>]…
// A test file that failed before any of its tests ran (e.g. it did not load) counts as one failed
// test; so does a run that exited non-zero with nothing else failed (typecheck, lint, no report,
// an unhandled error), so the line never says 0 failed for a failed run.
import fs from 'node:fs';

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
    return { passed: 0, failed: status === 0 ? 0 : 1, note: `no test report at ${reportFile}` };
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
  return { passed: report.numPassedTests, failed, note: notes.join('; ') };
}

let passed = 0;
let failed = 0;
for (let i = 0; i < args.length; i += 3) {
  const [label, status, reportFile] = args.slice(i, i + 3);
  const run = countRun(Number(status), reportFile);
  passed += run.passed;
  failed += run.failed;
  const note = run.note ? ` (${run.note})` : '';
  process.stderr.write(`${label}: ${run.passed} passed, ${run.failed} failed${note}\n`);
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
