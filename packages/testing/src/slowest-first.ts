import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Vitest's sequencer: the slowest test files first, so the workers end together instead of one of
 * them starting a two-minute file when the rest are done. Vitest orders by the durations in its
 * cache of the last run, but a clean clone (CI) has none, and vitest then orders by file size,
 * which says little here: the slow files are short ones that start processes. So a file's
 * duration is vitest's cached one when there is one, else the one recorded in `durations.json`
 * (a whole run's, written by `npm run test:durations -- <vitest JSON report>`). Files in neither
 * (new ones) run first, as vitest runs unknown files first.
 */

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const durationsFile = path.join(repoRoot, 'packages/testing/durations.json');

/** Seconds per test file, keyed by `durationKey` of its path. */
export type Durations = Record<string, number>;

/** A test file's key in `durations.json`: its path from the repository root. */
export const durationKey = (file: string): string => path.relative(repoRoot, file);

export default class SlowestFirst extends BaseSequencer {
  override sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const recorded = JSON.parse(readFileSync(durationsFile, 'utf8')) as Durations;
    const { cache, config } = this.ctx;
    const durationMs = (file: TestSpecification): number => {
      const cached = cache.getFileTestResults(
        `${file.project.name}:${path.relative(config.root, file.moduleId)}`,
      );
      if (cached) return cached.duration;
      const seconds = recorded[durationKey(file.moduleId)];
      return seconds === undefined ? Number.MAX_SAFE_INTEGER : seconds * 1000;
    };
    const byDuration = new Map(files.map((file) => [file, durationMs(file)]));
    return Promise.resolve([...files].sort((a, b) => byDuration.get(b)! - byDuration.get(a)!));
  }
}
