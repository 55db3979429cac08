import { connectionEnv, loadConfig } from '@shoal/config';
import { parseCli, runCli } from '@shoal/config/cli';
import { migrate } from '../migrate.js';

const usage = `Usage: npm run migrate -- up|down [count] [--dir <migrations folder> ...] [--schema <name>]

  up [N]     apply pending migrations (all, or the next N)
  down [N]   revert the last N migrations (default 1)
  --schema   the service's schema (grouping's is grouping) holding the tables and their
             pgmigrations; public when absent. A service migrates its own schema at start.

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/shoal).
`;

runCli(async () => {
  const { positionals, values } = parseCli(usage, {
    dir: { type: 'string', multiple: true },
    schema: { type: 'string' },
  });
  const [direction, countArg] = positionals;
  if ((direction !== 'up' && direction !== 'down') || positionals.length > 2) {
    process.stderr.write(usage);
    return 2;
  }
  const count = countArg === undefined ? undefined : Number(countArg);
  if (count !== undefined && (!Number.isInteger(count) || count < 1))
    throw new Error(`count must be a positive whole number, got "${countArg}"`);
  const { DATABASE_URL } = loadConfig({ DATABASE_URL: connectionEnv.DATABASE_URL });
  const ran = await migrate({
    databaseUrl: DATABASE_URL,
    direction,
    count,
    dirs: values.dir,
    schema: values.schema,
  });
  process.stdout.write(
    ran.length
      ? ran.map((m) => `${direction}: ${m.name}`).join('\n') + '\n'
      : `${direction}: nothing to do\n`,
  );
  return 0;
});
