import { runService } from '@shoal/kafka-runtime';
import { regressionService } from './service.js';

await runService(regressionService());
