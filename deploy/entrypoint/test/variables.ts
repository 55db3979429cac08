import type { Env } from '@shoal/config';

/**
 * Runs a configuration parser over `env` and returns every variable it read: a variable set that
 * no parser reads is one the process ignores (a typo, a leftover), which the manifests' and
 * compose's tests refuse.
 */
export function variablesRead(
  parse: (source: Env) => unknown,
  env: Env,
): { read: Set<string>; result: unknown } {
  const read = new Set<string>();
  const recording = new Proxy(env, {
    get: (target, key) => {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key) as unknown;
    },
  });
  return { read, result: parse(recording) };
}
