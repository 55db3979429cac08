// Runs before `npm start` and `npm test`: installs the locked dependencies when they are missing or
// older than package-lock.json, so both commands work on a fresh clone. Plain JS: nothing is installed yet.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const mtime = (file) => (fs.existsSync(file) ? fs.statSync(file).mtimeMs : 0);
if (mtime('node_modules/.package-lock.json') < mtime('package-lock.json')) {
  process.stderr.write('installing dependencies (npm ci)…\n');
  const result = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
