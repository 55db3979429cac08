import { connectionEnv, loadConfig } from '@shoal/config';
import { parseCli, runCli } from '@shoal/config/cli';
import { migrate } from '../migrate.js';

const usage = `Usage: npm run migrate -- up|down [count] [--dir <migrations folder> ...]

  up [N]     apply pending migrations (all, or the next N)
  down [N]   revert the last N migrations (default 1)

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/shoal).
`;

runCli(async () => {
  const { positionals, values } = parseCli(usage, { dir: { type: 'string', multiple: true } });
  const [direction, countArg] = positionals;
  if ((direction !== 'up' && direction !== 'down') || positionals.length > 2) {
    process.stderr.write(usage);
    return 2;
  }
  const count = countArg === undefined ? undefined : Number(countArg);
  if (count !== undefined && (!Number.isInteger(count) || count < 1))
    throw new Error(`count must be a positive whole number, got "${countArg}"`);
  const { DATABASE_URL } = loadConfig({ DATABASE_URL: connectionEnv.DATABASE_URL });
  const ran = await migrate({ databaseUrl: DATABASE_URL, direction, count, dirs: values.dir });
  process.stdout.write(
    ran.length
      ? ran.map((m) => `${direction}: ${m.name}`).join('\n') + '\n'
      : `${direction}: nothing to do\n`,
  );
  return 0;
});
