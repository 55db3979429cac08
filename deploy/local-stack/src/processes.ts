import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A server the stack started: its pid file and log live in `dir`. A pid counts as ours only
 * while its command line still names the marker, so a recycled pid is never signalled.
 */
export interface ManagedProcess {
  name: string;
  dir: string;
  marker: string;
}

const pidFile = (p: ManagedProcess) => path.join(p.dir, `${p.name}.pid`);
export const logFile = (p: ManagedProcess) => path.join(p.dir, `${p.name}.log`);

export function runningPid(p: ManagedProcess): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile(p), 'utf8').trim());
  } catch {
    return undefined;
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(p.marker) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function startDetached(
  p: ManagedProcess,
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {},
): number {
  fs.mkdirSync(p.dir, { recursive: true });
  const log = fs.openSync(logFile(p), 'a');
  fs.writeSync(log, `\n--- ${new Date().toISOString()} ${command} ${args.join(' ')}\n`);
  const child = spawn(command, args, {
    cwd: options.cwd ?? p.dir,
    env: options.env ?? process.env,
    detached: true,
    stdio: ['ignore', log, log],
    uid: options.uid,
    gid: options.gid,
  });
  fs.closeSync(log);
  if (child.pid === undefined) throw new Error(`could not start ${p.name}: ${command}`);
  child.unref();
  fs.writeFileSync(pidFile(p), `${child.pid}\n`);
  return child.pid;
}

export async function stopProcess(p: ManagedProcess, graceMs = 30_000): Promise<boolean> {
  const pid = runningPid(p);
  if (pid === undefined) {
    fs.rmSync(pidFile(p), { force: true });
    return false;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && runningPid(p) === pid) await sleep(200);
  if (runningPid(p) === pid) process.kill(pid, 'SIGKILL');
  while (runningPid(p) === pid) await sleep(100);
  fs.rmSync(pidFile(p), { force: true });
  return true;
}

export function tail(file: string, lines = 40): string {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

/**
 * The error of a server that did not come up, with what its log says: the log's last lines and,
 * before them, its last error lines (ERROR, FATAL, an exception) that those do not show: a JVM may
 * log its bind error, then pages of configuration as it shuts down.
 */
export function startFailure(error: unknown, log: string, lines = 40): Error {
  let excerpt: string;
  try {
    const all = fs.readFileSync(log, 'utf8').split('\n');
    const earlier = all
      .slice(0, -lines - 1)
      .filter((line) => /\b(ERROR|FATAL)\b|Exception\b/.test(line))
      .slice(-5);
    excerpt = [
      ...(earlier.length ? ['(errors earlier in the log)', ...earlier, '(its last lines)'] : []),
      ...all.slice(-lines - 1),
    ].join('\n');
  } catch {
    excerpt = `(no log at ${log})`;
  }
  return new Error(`${(error as Error).message}; last lines of ${log}:\n${excerpt}`);
}

/** Runs a command to completion; on failure the error carries its output. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    ...options,
  });
  if (result.error) throw new Error(`${command} could not run: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited with ${result.status}\n${(result.stdout + result.stderr).trim().split('\n').slice(-30).join('\n')}`,
    );
  }
  return result.stdout;
}

export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (!alive()) throw new Error(`${what} exited before it answered`);
    if (Date.now() > deadline)
      throw new Error(`${what} did not answer within ${timeoutMs / 1000} s`);
    await sleep(500);
  }
}

/** A cross-process lock so concurrent `up`s (parallel test runners) do not race. */
export async function withLock<T>(
  dir: string,
  fn: () => Promise<T>,
  timeoutMs = 600_000,
): Promise<T> {
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, 'stack.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch {
      const holder = Number(fs.readFileSync(lock, 'utf8') || 0);
      if (!holder || !fs.existsSync(`/proc/${holder}`)) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`stack lock ${lock} held by pid ${holder} for too long`);
      await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}
