import { runService } from '@shoal/kafka-runtime';
import { groupingService } from './service.js';

await runService(groupingService());
