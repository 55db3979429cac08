// Lifecycle: the intake and decide consumers, the claim sweeper and the agent HTTP API, in one process.
import { runService } from '@shoal/kafka-runtime';
import { lifecycleService } from './service.js';

await runService(lifecycleService());
