import type { FuzzTarget } from './engine.js';
import { dedupFuzzTarget } from './dedup.js';
import { groupingFuzzTarget } from './grouping.js';

/** Every consumer the fuzz run feeds: adding one is one line (its target beside grouping's). */
export const fuzzTargets: Record<string, FuzzTarget> = {
  grouping: groupingFuzzTarget,
  dedup: dedupFuzzTarget,
};
