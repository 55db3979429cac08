/**
 * `npm run chaos`: the kill-anywhere comparison (packages/kafka-runtime/test/chaos.ts) against the
 * runtime's counter service or against grouping itself.
 */
import { parseCli } from '@shoal/config/cli';
import {
  chaosDifferences,
  counterChaos,
  runChaos,
  type ChaosTarget,
} from '../packages/kafka-runtime/test/chaos.js';
import { groupingChaos } from './chaos/grouping.js';

const services: Record<string, { target: ChaosTarget; kills: number }> = {
  counter: { target: counterChaos, kills: 10 },
  grouping: { target: groupingChaos, kills: 50 },
};

const usage = `Usage: npm run chaos -- [--service counter|grouping] [--messages N] [--kills K]

Publishes N occurrences (default 20000) while the service (a child process) is SIGKILLed K times
at random instants and at the runtime's hook points (between outbox publish and mark, before
commit, after a dead-letter write), restarting it each time, then compares its read model, the
event ids it published on the real topic and its recorded failures with an uninterrupted run over
the same occurrences. One in 997 names a deleted entity (dead-lettered once); one in 89 of the
others an entity announced partway through (held until then, then applied once).

  --service NAME   counter (the runtime tests' service; default, 10 kills) or grouping (50 kills)
  --messages N     occurrences (default 20000)
  --kills K        kills (default: the service's)

Needs the local stack (npm run stack -- up).
Exit codes: 0 the runs are equal; 1 they differ; 2 bad usage.

Example: npm run chaos -- --service grouping --kills 50 --messages 200000
`;
const { values } = parseCli(usage, {
  service: { type: 'string' },
  messages: { type: 'string' },
  kills: { type: 'string' },
});
const service = services[values.service ?? 'counter'];
const messages = Number(values.messages ?? 20000);
const kills = Number(values.kills ?? service?.kills);
if (
  !service ||
  !Number.isInteger(messages) ||
  messages < 1 ||
  !Number.isInteger(kills) ||
  kills < 0
) {
  process.stderr.write(
    `--service is counter or grouping; --messages and --kills take whole numbers\n\n${usage}`,
  );
  process.exit(2);
}
const report = await runChaos(
  { messages, kills, log: (line) => process.stderr.write(`${line}\n`) },
  service.target,
);
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
const differences = chaosDifferences(report);
process.stdout.write(
  differences.length
    ? `FAILED: ${differences.join('; ')}\n`
    : `OK: ${report.target}'s read model, event ids and failures equal an uninterrupted run\n`,
);
process.exit(differences.length ? 1 : 0);
