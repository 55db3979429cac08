import { runService } from '@shoal/kafka-runtime';
import { dedupService } from './service.js';

await runService(dedupService());
