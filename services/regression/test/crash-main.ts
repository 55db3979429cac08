import { runService } from '@shoal/kafka-runtime';
import { crashHookFromEnv } from '../../../packages/kafka-runtime/test/crash-at.js';
import { regressionService } from '../src/service.js';

/** Regression's main with fault injection for kill tests: SHOAL_CRASH_AT=<hook>:<n> (crash-at.ts). */
await runService({ ...regressionService(), hook: crashHookFromEnv() });
