import path from 'node:path';
import {
  logFile,
  runningPid,
  startDetached,
  startFailure,
  waitUntil,
  type ManagedProcess,
} from './processes.js';
import { repoRoot } from './settings.js';

/** Shoal's own services as background processes of the local stack (started by `npm start`). */
export interface ServiceSpec {
  name: 'grouping' | 'regression' | 'dedup' | 'lifecycle' | 'ingest-gateway';
  /** Where its /healthz answers once it runs. */
  port: number;
  env: NodeJS.ProcessEnv;
}

export const serviceProcess = (home: string, name: string): ManagedProcess => ({
  name,
  dir: path.join(home, 'services'),
  marker: `--shoal-service=${path.join(home, 'services', name)}`,
});

async function healthy(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) }))
      .ok;
  } catch {
    return false;
  }
}

/** Starts the service unless it runs; waits until its /healthz answers. Returns its pid. */
export async function ensureService(
  home: string,
  spec: ServiceSpec,
  timeoutMs: number,
): Promise<number> {
  const proc = serviceProcess(home, spec.name);
  let pid = runningPid(proc);
  if (pid === undefined) {
    const entry = path.join(repoRoot, 'services', spec.name, 'src', 'main.ts');
    pid = startDetached(
      proc,
      process.execPath,
      ['--import', 'tsx', '--conditions=shoal-source', entry, proc.marker],
      {
        cwd: repoRoot,
        env: { ...process.env, ...spec.env },
      },
    );
  }
  try {
    await waitUntil(
      spec.name,
      () => healthy(spec.port),
      timeoutMs,
      () => runningPid(proc) !== undefined,
    );
  } catch (error) {
    throw startFailure(error, logFile(proc));
  }
  return pid;
}
