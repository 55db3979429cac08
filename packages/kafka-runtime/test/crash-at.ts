import type { RuntimeHook } from '../src/index.js';

/**
 * Fault injection for a service run as a child process: `SHOAL_CRASH_AT=<hook>:<n>` makes it
 * SIGKILL itself the n-th time the runtime reaches <hook> (e.g. `relay:published:2` dies between
 * publishing outbox rows and marking them). Without the variable, no hook.
 */
export function crashHookFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): ((point: RuntimeHook) => void) | undefined {
  const spec = env.SHOAL_CRASH_AT;
  if (!spec) return undefined;
  const at = spec.lastIndexOf(':');
  const point = spec.slice(0, at) as RuntimeHook;
  const count = Number(spec.slice(at + 1));
  let reached = 0;
  return (reachedPoint) => {
    if (reachedPoint === point && ++reached >= count) process.kill(process.pid, 'SIGKILL');
  };
}
