import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { logFile, run, runningPid, startDetached, type ManagedProcess } from './processes.js';
import type { StackSettings } from './settings.js';

type PostgresSettings = StackSettings['postgres'];

export const postgresProcess = (s: PostgresSettings): ManagedProcess => ({
  name: 'postgres',
  dir: s.dir,
  marker: path.join(s.dir, 'data'),
});

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** `select 1` against the server (its maintenance database, so a missing app database still counts). */
export async function postgresAnswers(s: PostgresSettings): Promise<boolean> {
  try {
    await query(withDatabase(s.url, 'postgres'), 'select 1');
    return true;
  } catch {
    return false;
  }
}

export async function serverVersion(s: PostgresSettings): Promise<string> {
  const [row] = await query<{ server_version: string }>(
    withDatabase(s.url, 'postgres'),
    'show server_version',
  );
  return row?.server_version ?? 'unknown';
}

export async function ensureDatabase(s: PostgresSettings, database: string): Promise<boolean> {
  const admin = withDatabase(s.url, 'postgres');
  const rows = await query(admin, 'select 1 from pg_database where datname = $1', [database]);
  if (rows.length > 0) return false;
  await query(admin, `create database "${database.replace(/"/g, '""')}"`).catch(
    (error: { code?: string }) => {
      if (error.code !== '42P04') throw error; // created concurrently
    },
  );
  return true;
}

function postgresBinDir(log: (line: string) => void): string {
  const find = () => {
    try {
      const versions = fs
        .readdirSync('/usr/lib/postgresql')
        .filter((v) => fs.existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))
        .sort((a, b) => Number(b) - Number(a));
      return versions[0] && `/usr/lib/postgresql/${versions[0]}/bin`;
    } catch {
      return undefined;
    }
  };
  const found = find();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      'postgres: no server answers at DATABASE_URL and PostgreSQL is not installed; run `apt-get install postgresql` or point DATABASE_URL at a server',
    );
  }
  log("postgres: installing Debian's PostgreSQL (apt-get install postgresql)");
  run('apt-get', ['update', '-qq']);
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'postgresql'], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const installed = find();
  if (!installed)
    throw new Error(
      'postgres: apt-get installed postgresql but no initdb was found under /usr/lib/postgresql',
    );
  return installed;
}

/** PostgreSQL refuses to run as root, so as root the private cluster runs as the `postgres` user. */
function runAs(): { uid?: number; gid?: number; prefix: string[] } {
  if (process.getuid?.() !== 0) return { prefix: [] };
  const ids = run('id', ['-u', 'postgres']).trim();
  const gid = run('id', ['-g', 'postgres']).trim();
  return { uid: Number(ids), gid: Number(gid), prefix: ['runuser', '-u', 'postgres', '--'] };
}

/** A private cluster under the cache folder, listening where DATABASE_URL points, trust auth on 127.0.0.1. */
export function startPrivatePostgres(s: PostgresSettings, log: (line: string) => void): number {
  const bin = postgresBinDir(log);
  const data = path.join(s.dir, 'data');
  const user = runAs();
  fs.mkdirSync(s.dir, { recursive: true });
  if (user.uid !== undefined) {
    fs.chownSync(s.dir, user.uid, user.gid!);
    try {
      run(user.prefix[0]!, [...user.prefix.slice(1), 'test', '-w', s.dir]);
    } catch {
      throw new Error(
        `postgres: the private cluster runs as user postgres, which cannot reach ${s.dir}; set SHOAL_STACK_HOME to a folder every user can traverse`,
      );
    }
  }
  if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
    log(`postgres: initdb ${data}`);
    const [cmd, ...args] = [
      ...user.prefix,
      `${bin}/initdb`,
      '-D',
      data,
      '-U',
      new URL(s.url).username || 'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
    ];
    run(cmd!, args);
  }
  return startDetached(
    postgresProcess(s),
    `${bin}/postgres`,
    [
      '-D',
      data,
      '-p',
      String(s.port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-k',
      s.dir,
      '-c',
      'max_connections=200',
    ],
    { uid: user.uid, gid: user.gid },
  );
}

export const postgresLog = (s: PostgresSettings) => logFile(postgresProcess(s));
export const postgresPid = (s: PostgresSettings) => runningPid(postgresProcess(s));
