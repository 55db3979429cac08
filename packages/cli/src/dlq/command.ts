import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { cliConnections, connectionsHelp, withDatabase } from '../connections.js';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import { nonEmpty, wholeNumber } from '../options.js';
import { progressOf } from '../progress.js';
import { commandConnections } from '../publish.js';
import {
  canAsk,
  colorsFor,
  confirm,
  defaultActor,
  jsonLines,
  message,
  table,
  terminalAllows,
} from '../terminal.js';
import { applyDiscards, planDiscards, type DiscardStepOf } from './discard.js';
import { inspectDeadLetter, type Inspected } from './inspect.js';
import {
  earlierDiscards,
  earlierReplays,
  type EarlierDiscard,
  type EarlierReplay,
} from './ledger.js';
import {
  isUnreadable,
  knownReasons,
  matches,
  parseDeadLetter,
  readTopic,
  topicsOf,
  type DeadLetter,
  type Filters,
} from './records.js';
import { applyReplay, openReplay, planReplay, type ReplayRun, type Step } from './replay.js';

/** `shoal dlq <verb>`: the options, help texts and output of the dead-letter commands. */

const reason = (value: string): string => {
  if (!knownReasons.includes(value))
    throw new InvalidArgumentError(`expected one of ${knownReasons.join(', ')}.`);
  return value;
};

const entity = (value: string): { kind: string; id?: string } => {
  const [kind, ...id] = value.split(':');
  if (!kind) throw new InvalidArgumentError('expected kind or kind:id, e.g. project:42.');
  return id.length ? { kind, id: id.join(':') } : { kind };
};

const isoTime = (value: string): Date => {
  const time = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(time.getTime()))
    throw new InvalidArgumentError('expected an ISO time, e.g. 2026-11-30T10:00:00Z.');
  return time;
};

const rate = (value: string): number => {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n))
    throw new InvalidArgumentError('expected records per second, a number above 0.');
  return n;
};

const positive = (value: string): number => {
  const n = wholeNumber(value);
  if (n === 0) throw new InvalidArgumentError('expected 1 or more.');
  return n;
};

const topicDescription =
  'the original topic (its name, a catalog key such as occurrences, or <topic>.dlq)';

const dlqNoun = (program: Command<[], { color: boolean }>) =>
  program
    .command('dlq')
    .description('dead letters: what failed and why, replaying or discarding them')
    .addHelpText(
      'after',
      `
Examples:
  npx shoal dlq list --topic occurrences
  npx shoal dlq replay --help
  npx shoal dlq discard --help`,
    );

/** A verb of `shoal dlq` with the filter options list and replay share. */
function filteredVerb(dlq: ReturnType<typeof dlqNoun>, name: string, description: string) {
  return dlq
    .command(name)
    .description(description)
    .requiredOption('--topic <name|key>', topicDescription, nonEmpty)
    .option('--reason <reason>', `only this shoal.dlq.reason (${knownReasons.join(', ')})`, reason)
    .option(
      '--entity <kind[:id]>',
      'only records referencing this entity (kind, or kind:id)',
      entity,
    )
    .option('--key <key>', 'only records with this key')
    .option('--since <iso>', 'only records that first failed at or after this time', isoTime)
    .option('--until <iso>', 'only records that first failed before this time', isoTime)
    .option('--group <group>', 'only records this consumer group dead-lettered', nonEmpty);
}

const filtersOf = (o: Filters): Filters => ({
  reason: o.reason,
  entity: o.entity,
  key: o.key,
  since: o.since,
  until: o.until,
  group: o.group,
});

const cut = (text: string | null, length = 60) =>
  text === null ? '-' : text.length > length ? `${text.slice(0, length - 1)}…` : text;

const entityOf = (d: DeadLetter) => (d.entity ? `${d.entity} ${d.entityId ?? ''}`.trim() : '-');

/** A dead letter as list shows it: with what was done about it. */
type Listed = DeadLetter & { replayedBy: EarlierReplay | null; discardedBy: EarlierDiscard | null };

const stateOf = (d: Listed) =>
  d.discardedBy
    ? `discarded by ${d.discardedBy.actor}: ${cut(d.discardedBy.reason, 30)}`
    : d.replayedBy
      ? `replayed, run ${d.replayedBy.runId.slice(0, 8)}`
      : '-';

function deadLetterRow(d: Listed): (string | number)[] {
  return [
    d.dlqOffset,
    `${d.originalTopic}/${d.originalPartition}@${d.originalOffset}`,
    cut(d.key, 40),
    d.rejection ? `${d.reason} (${d.rejection})` : d.reason,
    entityOf(d),
    cut(d.errorMessage),
    d.attempts,
    d.firstFailedAt,
    stateOf(d),
  ];
}

const deadLetterHead = [
  'dlq offset',
  'original',
  'key',
  'reason',
  'entity',
  'error',
  'attempts',
  'first failed',
  'state',
];

const unreadable = (dlqOffset: number, problem: string) => {
  message(`dlq offset ${dlqOffset}: not a readable dead letter: ${problem}`);
  process.exitCode = exitCodes.refused;
};

function describeStep(step: Step, dryRun: boolean): string {
  if (step.action === 'refuse') return `dlq offset ${step.dlqOffset}: refused: ${step.problem}`;
  const d = step.record;
  const what = `dlq offset ${d.dlqOffset} (${d.reason}, key ${d.key ?? '-'}) -> ${d.originalTopic}`;
  if (step.action === 'skip')
    return `${what}: skipped, replayed by run ${step.earlier.runId} (${step.earlier.actor}, ${step.earlier.replayedAt})`;
  if (step.action === 'skip-discarded') return `${what}: skipped, ${discardedText(step.discard)}`;
  return `${what}: ${dryRun ? 'would replay' : 'replayed'}`;
}

const noSteps = (): Record<Step['action'], number> => ({
  replay: 0,
  skip: 0,
  'skip-discarded': 0,
  refuse: 0,
});

/** What a replay would do, counted by step: the question asked, or the line of a run with nothing to do. */
const summaryOf = (
  counts: Record<Step['action'], number>,
  topics: { original: string; dlq: string },
) =>
  `${counts.replay} to replay from ${topics.dlq} to ${topics.original}, ${counts.skip} replayed before, ${counts.refuse} refused`;

const discardedText = (d: EarlierDiscard) =>
  `discarded by ${d.actor} (${d.discardedAt}): ${d.reason}`;

const stepJson = (step: Step, dryRun: boolean) =>
  step.action === 'refuse'
    ? step
    : step.action === 'skip'
      ? { action: 'skip', ...step.record, skippedFor: step.earlier }
      : step.action === 'skip-discarded'
        ? { action: 'skip', ...step.record, discarded: step.discard }
        : { action: dryRun ? 'would-replay' : 'replay', ...step.record };

function describeDiscard(step: DiscardStepOf, dryRun: boolean): string {
  if (step.action === 'refuse') return `dlq offset ${step.dlqOffset}: refused: ${step.problem}`;
  const d = step.record;
  const what = `dlq offset ${d.dlqOffset} (${d.reason}, key ${d.key ?? '-'})`;
  if (step.action === 'skip') return `${what}: skipped, ${discardedText(step.earlier)}`;
  const releases = step.parks
    ? `releases key ${step.parks.key} of group ${step.parks.group} (${step.parks.parkedMessages} parked messages)`
    : 'parks no key';
  return `${what}: ${dryRun ? 'would discard' : 'discarded'}; ${releases}`;
}

const discardJson = (step: DiscardStepOf, dryRun: boolean, id?: string) =>
  step.action === 'refuse'
    ? step
    : step.action === 'skip'
      ? { action: 'skip', ...step.record, discarded: step.earlier }
      : {
          action: dryRun ? 'would-discard' : 'discard',
          ...step.record,
          parks: step.parks,
          ...(id ? { discardId: id } : {}),
        };

function describeInspected(i: Inspected): string {
  const d = i.deadLetter;
  const lines = [`dlq offset   ${i.dlqOffset} of ${i.dlqTopic}`];
  if (d)
    lines.push(
      `original     ${d.originalTopic}/${d.originalPartition}@${d.originalOffset}`,
      `group        ${d.group}`,
      `message id   ${d.messageId}`,
      `key          ${d.key ?? '-'}`,
      `reason       ${d.rejection ? `${d.reason} (${d.rejection})` : d.reason}`,
      `entity       ${entityOf(d)}`,
      `error        ${d.errorClass ?? '-'}: ${d.errorMessage ?? '-'}`,
      `attempts     ${d.attempts}, first failed ${d.firstFailedAt}`,
    );
  else lines.push(`unreadable   ${i.problem}`);
  lines.push(
    `replayed     ${i.replayedBy ? `by run ${i.replayedBy.runId} (${i.replayedBy.actor}, ${i.replayedBy.replayedAt})` : 'no'}`,
    `discarded    ${i.discardedBy ? discardedText(i.discardedBy) : 'no'}`,
    `parks        ${i.parks ? `key ${i.parks.key} of group ${i.parks.group}, partition ${i.parks.partition}: ${i.parks.parkedMessages} messages wait` : 'no key'}`,
    'headers:',
    ...Object.entries(i.headers).map(([name, value]) => `  ${name}: ${value}`),
  );
  const v = i.value;
  if (v === null) lines.push('value: null (a tombstone)');
  else if (v.encoding === 'registry-json')
    lines.push(`value (JSON, schema id ${v.schemaId}):`, JSON.stringify(v.json, null, 2));
  else if (v.encoding === 'utf8') lines.push('value (text):', v.text);
  else lines.push('value (base64):', v.base64);
  return `${lines.join('\n')}\n`;
}

const filtersHelp = `
Filters: --reason, --entity kind[:id], --key, --since/--until (the first failure, ISO time) and
--group (the consumer group that dead-lettered it) all have to match.`;

const listHelp = `
Reads <topic>.dlq from Kafka (the truth) from its start to its high watermark: one row per dead
letter with its offset there, where it was (topic/partition@offset), key, reason (and a
rejection's reason), the entity and id it referenced, the error (cut; whole in --json), attempts
and when it first failed. A record without readable shoal.dlq.* headers is reported on stderr,
the rest are still listed, and the exit code is 3.
${filtersHelp}

Examples:
  npx shoal dlq list --topic occurrences
  npx shoal dlq list --topic shoal.occurrences.v1 --reason stale_reference --entity project:42
  npx shoal dlq list --topic occurrences --since 2026-11-30T00:00:00Z --json | jq .messageId

${exitCodesHelp}

${connectionsHelp}`;

const inspectHelp = `
One dead letter whole: where it was, why it failed (the error uncut), every header, the key, the
value (a registry-framed JSON value as JSON with its schema id, else text, else base64) and
whether a replay run re-published it. Exit 3 when its shoal.dlq.* headers are not readable.

Examples:
  npx shoal dlq inspect --topic occurrences --offset 42
  npx shoal dlq inspect --topic shoal.occurrences.v1.dlq --offset 42 --json | jq .value

${exitCodesHelp}

${connectionsHelp}`;

const discardHelp = `
Gives up on dead letters for good: each discard is recorded with --actor and --reason in
PostgreSQL (schema shoal_cli of DATABASE_URL), after which shoal dlq list hides the record (shown
with --discarded) and shoal dlq replay skips it. The record itself stays in <topic>.dlq.

A dead letter that heads a parked key (an ordered topic keeps the key's later messages parked
behind it, in its consumer's parked_keys) is released: a discard marker (shoal.discard.* headers,
null value) goes to the original topic on the key's partition, and the consumer group that parked
it releases the key when it reads the marker, applying the parked messages in order. Discarding
again is skipped, naming the earlier discard. On a terminal it asks first; elsewhere --yes is
required.

Examples:
  npx shoal dlq discard --topic status-changes --offset 42 --reason "detector 9 retired" --dry-run
  npx shoal dlq discard --topic status-changes --offset 42 --offset 43 --yes \\
    --reason "INC-42: superseded" --actor "ops@example"

${exitCodesHelp}

${connectionsHelp}`;

const replayHelp = `
Re-publishes each matching dead letter to the topic it came from (shoal.dlq.original-topic,
which must be the topic of --topic, never a .dlq topic) with its key (the default partitioner
puts it where the original went), value bytes and headers, adding shoal.replay.id (this run),
shoal.replay.at, shoal.replay.by (--actor) and shoal.replay.source (<dlq topic>:<offset>). The
consumer group that dead-lettered it applies it once (its message id); other groups skip it.

Each run and each acknowledged batch is recorded in PostgreSQL (schema shoal_cli of
DATABASE_URL, created on the first replay): a record an earlier run replayed is skipped, naming
that run, so an interrupted replay is resumed by running it again. Records without readable
shoal.dlq.* headers are refused one by one (exit 3), the rest are replayed; so is a value no
longer valid for the schema registered for the topic (naming the field) unless --force; discarded
ones are skipped. On a terminal it asks first, from the whole plan; elsewhere --yes is required,
and a run with --yes replays as it reads: each record is printed once its fate is final (a
replayed one once its batch is recorded), and the total of its progress starts from the records
in <topic>.dlq (at most --limit), coming down to what there is to replay as they are read.
Progress goes to stderr: a bar (done/total, rate, ETA) on a terminal, none with NO_COLOR,
TERM=dumb or --no-color; elsewhere a line every 10 s.
${filtersHelp}

Examples:
  npx shoal dlq replay --topic occurrences --reason stale_reference --entity project:42 --dry-run
  npx shoal dlq replay --topic occurrences --group grouping --limit 500 --rate 200 --yes \\
    --actor "ops@example (INC-42)"

${exitCodesHelp}

${connectionsHelp}`;

export function addDlqCommand(program: Command<[], { color: boolean }>): void {
  const dlq = dlqNoun(program);

  filteredVerb(dlq, 'list', 'the dead letters of a topic, with why they failed')
    .option('--discarded', 'also the dead letters discarded with shoal dlq discard')
    .option('--json', 'JSON Lines: one object per dead letter')
    .addHelpText('after', listHelp)
    .action(async (options, command) => {
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const topics = topicsOf(options.topic);
      const filters = filtersOf(options);
      const matching: DeadLetter[] = [];
      for (const raw of await readTopic(KAFKA_BROKERS, topics.dlq)) {
        const record = parseDeadLetter(raw);
        if (isUnreadable(record)) unreadable(record.dlqOffset, record.problem);
        else if (matches(record, filters)) matching.push(record);
      }
      const offsets = matching.map((d) => d.dlqOffset);
      const [replays, discards] = await withDatabase(DATABASE_URL, (pool) =>
        Promise.all([
          earlierReplays(pool, topics.dlq, offsets),
          earlierDiscards(pool, topics.dlq, offsets),
        ]),
      );
      const rows: Listed[] = matching
        .map((d) => ({
          ...d,
          replayedBy: replays.get(d.dlqOffset) ?? null,
          discardedBy: discards.get(d.dlqOffset) ?? null,
        }))
        .filter((d) => options.discarded || d.discardedBy === null);
      if (rows.length < matching.length)
        message(`${matching.length - rows.length} discarded dead letters not shown (--discarded)`);
      if (rows.length === 0) message(`no matching dead letters in ${topics.dlq}`);
      const { color } = command.optsWithGlobals();
      const colors = colorsFor(process.stdout, color !== false);
      process.stdout.write(
        options.json
          ? jsonLines(rows)
          : `${table(colors, deadLetterHead, rows.map(deadLetterRow))}\n`,
      );
    });

  dlq
    .command('inspect')
    .description('one dead letter whole: headers, key, value, error, and its replay')
    .requiredOption('--topic <name|key>', topicDescription, nonEmpty)
    .requiredOption('--offset <n>', 'the offset in <topic>.dlq (see shoal dlq list)', wholeNumber)
    .option('--json', 'the record as one JSON object')
    .addHelpText('after', inspectHelp)
    .action(async (options) => {
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const inspected = await inspectDeadLetter(
        { dlqTopic: topicsOf(options.topic).dlq, offset: options.offset },
        { databaseUrl: DATABASE_URL, brokers: KAFKA_BROKERS },
      );
      if (inspected.problem) unreadable(inspected.dlqOffset, inspected.problem);
      process.stdout.write(options.json ? jsonLines([inspected]) : describeInspected(inspected));
    });

  filteredVerb(dlq, 'replay', 're-publish dead letters to the topic they came from, each once')
    .option('--limit <n>', 'replay at most this many records', positive)
    .option('--rate <per-second>', 'records per second at most', rate, 1000)
    .option('--actor <who>', 'who, kept in shoal.replay.by and shoal_cli', nonEmpty, defaultActor())
    .option('--force', "replay values no longer valid for the topic's schema too")
    .option('--dry-run', 'show what would be replayed and skipped, change nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .option('--json', 'JSON Lines: one object per record replayed, skipped or refused')
    .addHelpText('after', replayHelp)
    .action(async (options, command) => {
      const ask = !options.dryRun && !options.yes;
      if (ask && !canAsk())
        throw new UsageError('--yes is required to replay without a terminal to ask on');
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const connections = {
        databaseUrl: DATABASE_URL,
        brokers: KAFKA_BROKERS,
        registryUrl: commandConnections().SCHEMA_REGISTRY_URL,
      };
      const topics = topicsOf(options.topic);
      const filters = filtersOf(options);
      const request = {
        topic: topics.original,
        dlqTopic: topics.dlq,
        filters,
        limit: options.limit,
        force: options.force,
      };
      const lines = (steps: Step[], dryRun: boolean) => {
        if (steps.some((s) => s.action === 'refuse')) process.exitCode = exitCodes.refused;
        return options.json
          ? jsonLines(steps.map((s) => stepJson(s, dryRun)))
          : steps.map((s) => `${describeStep(s, dryRun)}\n`).join('');
      };
      const { color } = command.optsWithGlobals();
      const animate = terminalAllows(process.stderr, color !== false);
      const replayed = (done: ReplayRun) =>
        message(
          `replayed ${done.replayed} records as run ${done.runId} by ${options.actor} (recorded in shoal_cli.dlq_replay_runs)`,
        );
      if (options.yes && !options.dryRun) {
        // confirmed up front: each batch is produced as it fills, while the rest is read
        const counts = noSteps();
        const source = await openReplay(request, connections);
        const progress = progressOf(
          'replayed',
          Math.min(options.limit ?? Infinity, source.records),
          animate,
        );
        const done = await source
          .replay({
            actor: options.actor,
            rate: options.rate,
            filters,
            progress: progress.update,
            settled: (steps) => {
              for (const step of steps) counts[step.action]++;
              process.stdout.write(lines(steps, false));
            },
          })
          .finally(() => progress.stop());
        if (done.runId) replayed(done);
        else message(summaryOf(counts, topics));
        return;
      }
      const plan = await planReplay(request, connections);
      const counts = noSteps();
      for (const step of plan.steps) counts[step.action]++;
      const summary = summaryOf(counts, topics);
      if (options.dryRun || counts.replay === 0) {
        process.stdout.write(lines(plan.steps, true));
        message(options.dryRun ? `dry run: ${summary}; nothing changed` : summary);
        return;
      }
      if (ask && !(await confirm(`Replay: ${summary}?`))) {
        message('nothing changed');
        process.exitCode = exitCodes.failed;
        return;
      }
      const progress = progressOf('replayed', counts.replay, animate);
      const done = await applyReplay(
        plan,
        { actor: options.actor, rate: options.rate, filters, progress: progress.update },
        connections,
      ).finally(() => progress.stop());
      process.stdout.write(lines(plan.steps, false));
      replayed(done);
    });

  addDiscardVerb(dlq);
}

function addDiscardVerb(dlq: ReturnType<typeof dlqNoun>): void {
  dlq
    .command('discard')
    .description('give up on dead letters: recorded with who and why, released if they park a key')
    .requiredOption('--topic <name|key>', topicDescription, nonEmpty)
    .requiredOption(
      '--offset <n>',
      'an offset in <topic>.dlq (repeat for more)',
      (value: string, previous: number[] = []) => [...previous, wholeNumber(value)],
    )
    .requiredOption('--reason <why>', 'why, kept with the discard', nonEmpty)
    .option('--actor <who>', 'who, kept with the discard', nonEmpty, defaultActor())
    .option('--dry-run', 'show what would be discarded and released, change nothing')
    .option('--yes', 'do not ask (required without a terminal)')
    .option('--json', 'JSON Lines: one object per record discarded, skipped or refused')
    .addHelpText('after', discardHelp)
    .action(async (options) => {
      const ask = !options.dryRun && !options.yes;
      if (ask && !canAsk())
        throw new UsageError('--yes is required to discard without a terminal to ask on');
      const { DATABASE_URL, KAFKA_BROKERS } = cliConnections();
      const connections = { databaseUrl: DATABASE_URL, brokers: KAFKA_BROKERS };
      const topics = topicsOf(options.topic);
      const plan = {
        topic: topics.original,
        dlqTopic: topics.dlq,
        steps: await planDiscards(
          { topic: topics.original, dlqTopic: topics.dlq, offsets: options.offset },
          connections,
        ),
      };
      const count = (action: DiscardStepOf['action']) =>
        plan.steps.filter((s) => s.action === action).length;
      const releasing = plan.steps.filter((s) => s.action === 'discard' && s.parks).length;
      const print = (dryRun: boolean, ids = new Map<DiscardStepOf, string>()) => {
        process.stdout.write(
          options.json
            ? jsonLines(plan.steps.map((s) => discardJson(s, dryRun, ids.get(s))))
            : plan.steps.map((s) => `${describeDiscard(s, dryRun)}\n`).join(''),
        );
        if (count('refuse') > 0) process.exitCode = exitCodes.refused;
      };
      const summary = `${count('discard')} to discard from ${plan.dlqTopic} (${releasing} releasing a parked key), ${count('skip')} discarded before, ${count('refuse')} refused`;
      if (options.dryRun || count('discard') === 0) {
        print(true);
        message(options.dryRun ? `dry run: ${summary}; nothing changed` : summary);
        return;
      }
      if (ask && !(await confirm(`Discard: ${summary}?`))) {
        message('nothing changed');
        process.exitCode = exitCodes.failed;
        return;
      }
      const done = await applyDiscards(
        plan,
        { actor: options.actor, reason: options.reason },
        connections,
      );
      print(false, new Map(done.map(({ id, step }) => [step as DiscardStepOf, id])));
      message(
        `discarded ${done.length} dead letters by ${options.actor}, ${releasing} parked keys released (recorded in shoal_cli.dlq_discards)`,
      );
    });
}
