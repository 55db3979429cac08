import { runService } from '@shoal/kafka-runtime';
import { crashHookFromEnv } from '../../packages/kafka-runtime/test/crash-at.js';
import { groupingService } from '../../services/grouping/src/service.js';

/** Grouping's main with the chaos run's fault injection: SHOAL_CRASH_AT=<hook>:<n> (crash-at.ts). */
await runService({ ...groupingService(), hook: crashHookFromEnv() });
