/**
 * `npm run chaos`: the kill-anywhere comparison (packages/kafka-runtime/test/chaos.ts) against the
 * runtime's counter service or against grouping itself; lifecycle's kill -9 run (chaos/lifecycle.ts).
 */
import { parseCli } from '@shoal/config/cli';
import {
  chaosDifferences,
  counterChaos,
  runChaos,
  type ChaosTarget,
} from '../packages/kafka-runtime/test/chaos.js';
import { groupingChaos } from './chaos/grouping.js';
import { lifecycleChaos } from './chaos/lifecycle.js';

const services: Record<string, { target: ChaosTarget; kills: number }> = {
  counter: { target: counterChaos, kills: 10 },
  grouping: { target: groupingChaos, kills: 50 },
};

const usage = `Usage: npm run chaos -- [--service counter|grouping|lifecycle] [--messages N] [--kills K]

Publishes N occurrences (default 20000) while the service (a child process) is SIGKILLed K times
at random instants and at the runtime's hook points (between outbox publish and mark, before
commit, after a dead-letter write), restarting it each time, then compares its read model, the
event ids it published on the real topic and its recorded failures with an uninterrupted run over
the same occurrences. One in 997 names a deleted entity (dead-lettered once); one in 89 of the
others an entity announced partway through (held until then, then applied once).

  --service NAME   counter (the runtime tests' service; default, 10 kills), grouping (50 kills)
                   or lifecycle (5 kills; see below)
  --messages N     occurrences (default 20000; lifecycle: agent commands, default 2000)
  --kills K        kills (default: the service's)

lifecycle: its main (intake, decide, sweeper, agent API) SIGKILLed K times at random instants under
agents' commands (through the HTTP API, retried with their Idempotency-Key, and straight on the
topic) and system ones (opens through intake and on the commands topic, intake's telemetry), while
an agent reads shoal.lifecycle.v1 from the start. It checks per issue versions 1..N in order, once
by event id; every command one outcome row, applied; every API command in flight at a kill applied
once and answered at /v1/commands/{id}. No uninterrupted run to compare with.

Needs the local stack (npm run stack -- up).
Exit codes: 0 the runs are equal; 1 they differ; 2 bad usage.

Example: npm run chaos -- --service grouping --kills 50 --messages 200000
`;
const { values } = parseCli(usage, {
  service: { type: 'string' },
  messages: { type: 'string' },
  kills: { type: 'string' },
});
const lifecycle = values.service === 'lifecycle';
const service = lifecycle ? { kills: 5 } : services[values.service ?? 'counter'];
const messages = Number(values.messages ?? (lifecycle ? 2000 : 20000));
const kills = Number(values.kills ?? service?.kills);
if (
  !service ||
  !Number.isInteger(messages) ||
  messages < 1 ||
  !Number.isInteger(kills) ||
  kills < 0
) {
  process.stderr.write(
    `--service is counter, grouping or lifecycle; --messages and --kills take whole numbers\n\n${usage}`,
  );
  process.exit(2);
}
const log = (line: string) => process.stderr.write(`${line}\n`);
if (lifecycle) {
  const report = await lifecycleChaos({ commands: messages, kills, log });
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(
    report.problems.length
      ? `FAILED: ${report.problems.join('; ')}\n`
      : `OK: every issue's versions 1..N in order once by event id (${report.events.duplicatesByEventId} repeats after kills), every command applied once\n`,
  );
  process.exit(report.problems.length ? 1 : 0);
}
const report = await runChaos(
  { messages, kills, log },
  (service as (typeof services)[string]).target,
);
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
const differences = chaosDifferences(report);
process.stdout.write(
  differences.length
    ? `FAILED: ${differences.join('; ')}\n`
    : `OK: ${report.target}'s read model, event ids and failures equal an uninterrupted run\n`,
);
process.exit(differences.length ? 1 : 0);
