/**
 * Decide's throughput against the real stack (not a test: run it, optionally under --cpu-prof):
 *   node --import tsx --conditions=shoal-source services/lifecycle/test/decide-throughput.ts [commands] [issues]
 * Publishes `issues` opens and then agent commands (a transition, then notes and run events) up to
 * `commands` on three partitions, starts the decide consumer (batches of at most 500, one
 * transaction each; the three partitions at once, as the service runs them) and prints commands/s from the first outcome until every command has one (the join apart),
 * beside the machine's load average.
 */
import { loadavg } from 'node:os';
import type { LifecycleCommand } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import { isolatedDatabase, isolatedTopics, kafka, uniqueName, waitFor } from '@shoal/testing';
import { agent, at, lifecycleDatabase, open, startDecide } from './decide-support.js';

const total = Number(process.argv[2] ?? 20_000);
const issueCount = Number(process.argv[3] ?? 500);
const ns = await isolatedTopics({ partitions: { lifecycleCommands: 3 } });
const db = await isolatedDatabase(lifecycleDatabase);
try {
  const issues = Array.from({ length: issueCount }, (_, i) => 1 + i);
  const commands: LifecycleCommand[] = issues.map((id) => open(id));
  for (const id of issues)
    commands.push(agent({ command: 'transition', issue_id: id, to_status: 'triaged' }));
  for (let n = 0; commands.length < total; n++) {
    const id = issues[n % issueCount]!;
    commands.push(
      n % 3 === 2
        ? agent({
            command: 'attach_event',
            issue_id: id,
            run_event: { run_id: `run-${id}`, phase: 'progress' },
            issued_at: at(100 + n),
          })
        : agent({ command: 'add_note', issue_id: id, note: `note ${n}`, issued_at: at(100 + n) }),
    );
  }
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  for (let i = 0; i < commands.length; i += 2000)
    await producer.send({
      topic: ns.topics.lifecycleCommands,
      acks: -1,
      messages: commands.slice(i, i + 2000).map((c) => ({
        key: String(c.issue_id),
        value: JSON.stringify(c),
        headers: { [HEADER.messageId]: c.command_id },
      })),
    });
  await producer.disconnect();

  const started = Date.now();
  const consumer = await startDecide(
    ns,
    db,
    uniqueName('decide-bench-'),
    {},
    {
      maxBatchSize: 500,
      concurrency: 3,
    },
  );
  const decided = async () =>
    (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM lifecycle_commands'))
      .rows[0]!.n;
  let first = 0;
  await waitFor(
    'every command decided',
    async () => {
      const n = await decided();
      if (n > 0 && first === 0) first = Date.now();
      return n === commands.length;
    },
    600_000,
  );
  const seconds = (Date.now() - first) / 1000;
  const joined = (first - started) / 1000;
  await consumer.stop();
  process.stdout.write(
    `${commands.length} commands over ${issueCount} issues in ${seconds.toFixed(1)} s from the first ` +
      `outcome (${joined.toFixed(1)} s to join before it): ` +
      `${Math.round(commands.length / seconds)} commands/s (load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')})\n`,
  );
} finally {
  await Promise.allSettled([db.drop(), ns.drop()]);
}
