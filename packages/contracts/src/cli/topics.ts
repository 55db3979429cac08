import { createTopics, planTopics, withAdmin } from '../admin.js';
import { cliConfig, formatTable, parsePartitions, parseCli, runCli } from './common.js';

const usage = `Usage: npm run topics -- create [--partitions occurrences=12,groupEvents=6]

Creates every Shoal topic and its .dlq topic (idempotent: existing topics are left as they are).
Default partitions: 6 for occurrences, status changes and group events, 3 for the others; 1 per DLQ.

Environment: KAFKA_BROKERS (default 127.0.0.1:9092), SHOAL_TOPIC_NAMESPACE (prefix, default none),
SHOAL_TOPIC_PARTITIONS (same format as --partitions).
`;

runCli(async () => {
  const { positionals, values } = parseCli(usage, { partitions: { type: 'string' } });
  if (positionals[0] !== 'create' || positionals.length !== 1) {
    process.stderr.write(usage);
    return 2;
  }
  const config = cliConfig();
  const partitions = parsePartitions(values.partitions ?? process.env.SHOAL_TOPIC_PARTITIONS ?? '');
  const results = await withAdmin(config.KAFKA_BROKERS, (admin) =>
    createTopics(admin, planTopics(config.topics, partitions)),
  );
  process.stdout.write(
    `${formatTable(results.map((r) => ({ topic: r.topic, partitions: r.actualPartitions, state: r.state, note: r.actualPartitions !== r.partitions ? `wanted ${r.partitions}; partitions are never changed here` : '' })))}\n`,
  );
  return 0;
});
