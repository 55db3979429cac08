import { runService } from '@shoal/kafka-runtime';
import { crashHookFromEnv } from '../../packages/kafka-runtime/test/crash-at.js';
import { dedupService } from '../../services/dedup/src/service.js';

/** Dedup's main with the kill tests' fault injection: SHOAL_CRASH_AT=<hook>:<n> (crash-at.ts). */
await runService({ ...dedupService(), hook: crashHookFromEnv() });
