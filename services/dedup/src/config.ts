import { ConfigError } from '@shoal/config';
import { DEFAULT_KEY_OPTIONS, parseKeyOptions, type KeyOptions } from '@shoal/dedup-keys';

/**
 * Dedup's configuration from the environment; a bad variable is a `ConfigError` naming it.
 * - `SHOAL_DEDUP_WINDOW_SECONDS` (default 86400): how far apart in time groups may be and still be
 *   linked by their key.
 * - `SHOAL_DEDUP_KEY_PARTS` (default `message,stack_frames:3,component,route`): what a key counts.
 * - `SHOAL_DEDUP_KEY_PARTS_BY_PROJECT`: JSON, per project, e.g. `{"42": "message,route"}`.
 */

export interface DedupConfig {
  windowMs: number;
  keyOptionsOf(projectId: number): KeyOptions;
}

const WINDOW = 'SHOAL_DEDUP_WINDOW_SECONDS';
const PARTS = 'SHOAL_DEDUP_KEY_PARTS';
const BY_PROJECT = 'SHOAL_DEDUP_KEY_PARTS_BY_PROJECT';

function keyOptions(variable: string, text: string): KeyOptions {
  try {
    return parseKeyOptions(text);
  } catch (error) {
    throw new ConfigError([{ variable, expected: (error as Error).message, got: text }]);
  }
}

export function dedupConfigFromEnv(
  env: Record<string, string | undefined> = process.env,
): DedupConfig {
  const windowText = env[WINDOW];
  const seconds = windowText === undefined ? 86_400 : Number(windowText);
  if (!Number.isSafeInteger(seconds) || seconds < 0)
    throw new ConfigError([
      { variable: WINDOW, expected: 'whole seconds, 0 or more', got: windowText },
    ]);
  const fallback = env[PARTS] ? keyOptions(PARTS, env[PARTS]) : DEFAULT_KEY_OPTIONS;
  const perProject = new Map<number, KeyOptions>();
  const byProject = env[BY_PROJECT];
  if (byProject) {
    let json: unknown;
    try {
      json = JSON.parse(byProject);
    } catch (error) {
      throw new ConfigError([
        { variable: BY_PROJECT, expected: `JSON (${(error as Error).message})`, got: byProject },
      ]);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json))
      throw new ConfigError([
        {
          variable: BY_PROJECT,
          expected: 'an object such as {"42": "message,route"}',
          got: byProject,
        },
      ]);
    for (const [project, parts] of Object.entries(json)) {
      const variable = `${BY_PROJECT} at ${project}`;
      if (!/^[1-9]\d{0,15}$/.test(project))
        throw new ConfigError([{ variable, expected: 'a project id', got: byProject }]);
      if (typeof parts !== 'string')
        throw new ConfigError([
          { variable, expected: 'parts as text, e.g. "message,route"', got: byProject },
        ]);
      perProject.set(Number(project), keyOptions(variable, parts));
    }
  }
  return {
    windowMs: seconds * 1000,
    keyOptionsOf: (projectId) => perProject.get(projectId) ?? fallback,
  };
}
