import { DLQ_HEADER, HEADER } from '@shoal/kafka-runtime';
import {
  createTestTopics,
  isolatedDatabase,
  kafka,
  readAll,
  uniqueName,
  waitFor,
  withAdmin,
  type IsolatedDatabase,
} from '@shoal/testing';
import type { Occurrence } from '@shoal/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  countsOf,
  counterRun,
  deletedProjects,
  expectedCounts,
  liveProjects,
  occurrence,
  storedNextOffset,
  type CounterRun,
} from '../../kafka-runtime/test/support.js';
import { deadLetterHeaders, shoalRunners } from './support.js';

// `shoal dlq` as operators run it (the workspace bin), against dead letters a real consumer (the
// runtime's counter service) wrote: occurrences naming a deleted project are dead-lettered
// stale_reference; once the project is restored, their replay is applied by that consumer once.

let run: CounterRun;
let cliDb: IsolatedDatabase;
let topic: string;
let dlq: string;
let values: Occurrence[];

const { shoal, shoalAsync, shoalEach, shoalOnTerminal } = shoalRunners(() => ({
  DATABASE_URL: cliDb.url,
}));

const jsonOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

const highWatermark = async (name: string) =>
  Number((await withAdmin((admin) => admin.fetchTopicOffsets(name)))[0]!.high);

const replayRuns = async () =>
  (
    await cliDb.pool.query<{ id: string; actor: string; replayed: number; finished: boolean }>(
      `SELECT id, actor, replayed, finished_at IS NOT NULL AS finished
       FROM shoal_cli.dlq_replay_runs ORDER BY started_at`,
    )
  ).rows;

beforeAll(async () => {
  run = await counterRun(uniqueName('cli-dlq-'), {});
  topic = run.ns.topics.occurrences;
  dlq = `${topic}.dlq`;
  cliDb = await isolatedDatabase({ migrate: false });
  await deletedProjects(run.db.pool, [2]);
  // projects 1, 2, 1, 2: the two occurrences of project 2 are dead-lettered
  values = [0, 1, 2, 3].map((i) => occurrence(i, { projects: 2, seed: uniqueName('dlq') }));
  await run.produce(values);
  await run.settled();
}, 180_000);

afterAll(async () => {
  await run?.stop();
  await cliDb?.drop();
});

describe('shoal dlq list', () => {
  it('shows each dead letter with where it was, its reason, entity and error', async () => {
    // the dead-letter topic's name works as well, as a table
    const [json, human] = await shoalEach([
      ['dlq', 'list', '--topic', topic, '--json'],
      ['dlq', 'list', '--topic', dlq],
    ]);
    expect(json.stderr).toBe('');
    expect(json.status).toBe(0);
    expect(jsonOf(json.stdout)).toEqual(
      [1, 3].map((offset, i) =>
        expect.objectContaining({
          dlqTopic: dlq,
          dlqOffset: i,
          originalTopic: topic,
          originalPartition: 0,
          originalOffset: offset,
          group: run.group,
          messageId: `occurrence:${values[offset]!.id}`,
          key: `2:fp-${i}`,
          reason: 'stale_reference',
          entity: 'project',
          entityId: '2',
          errorMessage: expect.stringContaining('project 2 was deleted at'),
          attempts: 1,
        }),
      ),
    );

    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(
      new RegExp(
        `│ 0 .*${topic}/0@1 .*2:fp-0 .*stale_reference .*project 2 .*project 2 was deleted`,
      ),
    );
  });

  it('filters by reason, entity, key, time and group', async () => {
    // each filter on its own run of the bin, side by side: they only read
    const cases: [string[], number[]][] = [
      [
        ['--reason', 'stale_reference', '--entity', 'project:2'],
        [0, 1],
      ],
      [['--reason', 'unknown_reference'], []],
      [['--entity', 'project:1'], []],
      [['--entity', 'project', '--key', '2:fp-1'], [1]],
      [['--since', '2100-01-01T00:00:00Z'], []],
      [
        ['--since', '2020-01-01', '--until', '2100-01-01'],
        [0, 1],
      ],
      [['--group', 'someone-else'], []],
    ];
    const [none, ...results] = await shoalEach([
      ['dlq', 'list', '--topic', topic, '--group', 'x'],
      ...cases.map(([filters]) => ['dlq', 'list', '--topic', topic, '--json', ...filters]),
    ]);
    expect(
      results.map((result, i) => ({
        filters: cases[i]![0],
        status: result.status,
        offsets: jsonOf(result.stdout).map((r) => r.dlqOffset),
      })),
    ).toEqual(cases.map(([filters, offsets]) => ({ filters, status: 0, offsets })));
    expect(none.stderr).toContain(`no matching dead letters in ${dlq}`);
  }, 180_000);
});

describe('shoal dlq replay', () => {
  it('--dry-run shows what it would replay and changes nothing', async () => {
    const result = shoal(['dlq', 'replay', '--topic', topic, '--dry-run', '--json']);
    expect(result.status).toBe(0);
    expect(jsonOf(result.stdout).map((r) => [r.action, r.dlqOffset])).toEqual([
      ['would-replay', 0],
      ['would-replay', 1],
    ]);
    expect(result.stderr).toContain('dry run: 2 to replay');
    expect(result.stderr).toContain('nothing changed');
    expect(await highWatermark(topic)).toBe(4);
    const { rows } = await cliDb.pool.query(`SELECT to_regnamespace('shoal_cli') AS schema`);
    expect(rows[0].schema).toBeNull();
  });

  it('refuses without --yes when there is no terminal to ask on (exit 2)', async () => {
    const result = shoal(['dlq', 'replay', '--topic', topic]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--yes is required');
    expect(await highWatermark(topic)).toBe(4);
  });

  it('on a terminal asks first: no changes nothing', async () => {
    const declined = shoalOnTerminal(['dlq', 'replay', '--topic', topic], 'n');
    expect(declined.output).toContain(`Replay: 2 to replay from ${dlq} to ${topic}`);
    expect(declined.output).toContain('nothing changed');
    expect(declined.status).toBe(1);
    expect(await highWatermark(topic)).toBe(4);
  });

  it('re-publishes to the original topic once the project is back; the consumer applies each once, and later runs skip them', async () => {
    await liveProjects(run.db.pool, [2]);
    const first = shoal([
      'dlq',
      'replay',
      '--topic',
      dlq,
      '--limit',
      '1',
      '--actor',
      'ops@example',
      '--yes',
    ]);
    expect(first.stderr).toContain('replayed 1 records as run');
    expect(first.status).toBe(0);
    expect(first.stdout).toContain(
      `dlq offset 0 (stale_reference, key 2:fp-0) -> ${topic}: replayed`,
    );

    const second = shoal(['dlq', 'replay', '--topic', topic, '--yes', '--json']);
    expect(second.status).toBe(0);
    const [runA, runB] = await replayRuns();
    expect(jsonOf(second.stdout)).toEqual([
      expect.objectContaining({
        action: 'skip',
        dlqOffset: 0,
        skippedFor: expect.objectContaining({ runId: runA!.id, actor: 'ops@example' }),
      }),
      expect.objectContaining({ action: 'replay', dlqOffset: 1 }),
    ]);
    expect([runA, runB]).toEqual([
      { id: expect.any(String), actor: 'ops@example', replayed: 1, finished: true },
      { id: expect.any(String), actor: expect.stringContaining('@'), replayed: 1, finished: true },
    ]);

    // key, value and headers as dead-lettered, plus the provenance
    const republished = (await readAll(topic)).slice(4);
    const deadLetters = await readAll(dlq);
    expect(republished.map((r) => r.headers[HEADER.messageId])).toEqual(
      deadLetters.map((r) => r.headers[HEADER.messageId]),
    );
    republished.forEach((r, i) => {
      expect(r.key).toBe(deadLetters[i]!.key);
      expect(r.value).toEqual(deadLetters[i]!.value);
      expect(r.headers).toEqual({
        ...deadLetters[i]!.headers,
        'shoal.replay.id': [runA, runB][i]!.id,
        'shoal.replay.at': expect.any(String),
        'shoal.replay.by': i === 0 ? 'ops@example' : expect.stringContaining('@'),
        'shoal.replay.source': `${dlq}:${i}`,
      });
    });

    await waitFor(
      'the consumer to apply both replays',
      async () => (await storedNextOffset(run.db.pool, run.group, topic)) === 6,
      60_000,
    );
    expect(await countsOf(run.db.pool)).toEqual(expectedCounts(values));

    const inspected = shoal(['dlq', 'inspect', '--topic', topic, '--offset', '0', '--json']);
    expect(inspected.status).toBe(0);
    expect(JSON.parse(inspected.stdout)).toMatchObject({
      dlqTopic: dlq,
      dlqOffset: 0,
      deadLetter: { reason: 'stale_reference', entity: 'project', entityId: '2' },
      problem: null,
      headers: { [DLQ_HEADER.consumerGroup]: run.group },
      value: { encoding: 'registry-json', schemaId: expect.any(Number), json: values[1] },
      replayedBy: { runId: runA!.id, actor: 'ops@example' },
    });
    const human = shoal(['dlq', 'inspect', '--topic', topic, '--offset', '1']).stdout;
    expect(human).toContain(`replayed     by run ${runB!.id}`);
    expect(human).toContain(`  ${DLQ_HEADER.reason}: stale_reference`);
    expect(human).toContain(`"id": "${values[3]!.id}"`);

    const third = shoal(['dlq', 'replay', '--topic', topic, '--yes']);
    expect(third.status).toBe(0);
    expect(third.stdout).toContain(
      `dlq offset 1 (stale_reference, key 2:fp-1) -> ${topic}: skipped, replayed by run ${runB!.id}`,
    );
    expect(third.stderr).toContain('0 to replay');
    expect(await highWatermark(topic)).toBe(6);
    expect(await countsOf(run.db.pool)).toEqual(expectedCounts(values));
  }, 180_000);

  it('refuses, one by one, records without readable headers or aimed at a dead-letter topic (exit 3)', async () => {
    const target = uniqueName('cli-dlq-bad.');
    const badDlq = `${target}.dlq`;
    await createTestTopics([{ topic: target }, { topic: badDlq }]);
    try {
      const headers = (overrides: Record<string, string>) =>
        deadLetterHeaders(target, 'm-1', overrides);
      const producer = kafka().producer();
      await producer.connect();
      await producer.send({
        topic: badDlq,
        messages: [
          { key: 'no-headers', value: 'a' },
          { key: 'garbled', value: 'b', headers: headers({ [DLQ_HEADER.attemptCount]: 'many' }) },
          { key: 'to-a-dlq', value: 'c', headers: headers({ [DLQ_HEADER.originalTopic]: badDlq }) },
          { key: 'good', value: 'd', headers: headers({}) },
          { key: 'binary', value: Buffer.from([0xff, 0xfe]), headers: headers({}) },
          {
            key: 'elsewhere',
            value: 'e',
            headers: headers({ [DLQ_HEADER.originalTopic]: 'some-other-topic' }),
          },
        ],
      });
      await producer.disconnect();

      const list = shoal(['dlq', 'list', '--topic', target, '--json']);
      expect(list.status).toBe(3);
      expect(list.stderr).toContain(
        'dlq offset 0: not a readable dead letter: shoal.dlq.original-topic is missing',
      );
      expect(list.stderr).toContain(
        'dlq offset 1: not a readable dead letter: shoal.dlq.attempt-count is not a whole number: "many"',
      );
      expect(jsonOf(list.stdout).map((r) => r.key)).toEqual([
        'to-a-dlq',
        'good',
        'binary',
        'elsewhere',
      ]);

      const garbled = shoal(['dlq', 'inspect', '--topic', target, '--offset', '0']);
      expect(garbled.status).toBe(3);
      expect(garbled.stdout).toContain('unreadable   shoal.dlq.original-topic is missing');
      expect(garbled.stdout).toContain('value (text):\na\n');
      const binary = shoal(['dlq', 'inspect', '--topic', target, '--offset', '4', '--json']);
      expect(binary.status).toBe(0);
      expect(JSON.parse(binary.stdout).value).toEqual({ encoding: 'base64', base64: '//4=' });

      const replay = shoal(['dlq', 'replay', '--topic', target, '--yes']);
      expect(replay.status).toBe(3);
      expect(replay.stdout).toContain('dlq offset 0: refused: shoal.dlq.original-topic is missing');
      expect(replay.stdout).toContain(
        `dlq offset 2: refused: shoal.dlq.original-topic "${badDlq}" is a dead-letter topic`,
      );
      expect(replay.stdout).toContain(
        `dlq offset 3 (processing_error, key good) -> ${target}: replayed`,
      );
      expect(replay.stdout).toContain(
        `dlq offset 5: refused: shoal.dlq.original-topic "some-other-topic" is not ${target}, whose dead letters these are`,
      );
      expect((await readAll(target)).map((r) => r.key)).toEqual(['good', 'binary']);
      expect(await highWatermark(badDlq)).toBe(6);
    } finally {
      await withAdmin((admin) => admin.deleteTopics({ topics: [target, badDlq] }));
    }
  }, 120_000);

  it('bad usage exits 2 naming the option, and replays nothing', async () => {
    const cases: [string[], string][] = [
      [['dlq', 'replay', '--yes'], "required option '--topic <name|key>' not specified"],
      [
        ['dlq', 'list', '--topic', 'no-such-topic'],
        '--topic: Kafka has no dead-letter topic "no-such-topic.dlq"',
      ],
      [
        ['dlq', 'list', '--topic', topic, '--reason', 'bogus'],
        "option '--reason <reason>' argument 'bogus' is invalid",
      ],
      [
        ['dlq', 'list', '--topic', topic, '--since', 'yesterday'],
        "option '--since <iso>' argument 'yesterday' is invalid",
      ],
      [
        ['dlq', 'list', '--topic', topic, '--entity', ':2'],
        "option '--entity <kind[:id]>' argument ':2' is invalid",
      ],
      [
        ['dlq', 'replay', '--topic', topic, '--yes', '--limit', '0'],
        "option '--limit <n>' argument '0' is invalid",
      ],
      [
        ['dlq', 'replay', '--topic', topic, '--yes', '--rate', '-5'],
        "option '--rate <per-second>' argument '-5' is invalid",
      ],
      [
        ['dlq', 'replay', '--topic', topic, '--yes', '--actor', ' '],
        "option '--actor <who>' argument ' ' is invalid",
      ],
      [
        ['dlq', 'inspect', '--topic', topic, '--offset', '9'],
        `--offset: ${dlq} holds no record at offset 9 (offsets 0 to 1)`,
      ],
    ];
    // each on its own run of the bin, side by side: every one is refused before it changes anything
    const [bare, ...results] = await shoalEach([['dlq'], ...cases.map(([args]) => args)]);
    results.forEach((result, i) => {
      const [args, named] = cases[i]!;
      expect({ args, status: result.status }).toEqual({ args, status: 2 });
      expect(result.stderr).toContain(named);
    });
    expect(bare.status).toBe(2);
    expect(await highWatermark(topic)).toBe(6);
  }, 300_000);

  it('Kafka down exits 4; PostgreSQL down exits 4 without printing its password', async () => {
    const [kafkaDown, pgDown] = await Promise.all([
      shoalAsync(['dlq', 'list', '--topic', topic], { KAFKA_BROKERS: '127.0.0.1:1' }),
      shoalAsync(['dlq', 'replay', '--topic', topic, '--dry-run'], {
        DATABASE_URL: 'postgres://shoal:s3cret-pw@127.0.0.1:1/shoal',
      }),
    ]);
    expect(kafkaDown.status).toBe(4);
    expect(pgDown.status).toBe(4);
    expect(pgDown.stderr).toContain('ECONNREFUSED');
    expect(pgDown.stderr + pgDown.stdout).not.toContain('s3cret-pw');
  });
});

describe('shoal dlq --help', () => {
  it('shows examples and the exit codes at every level', async () => {
    const levels = [['dlq'], ['dlq', 'list'], ['dlq', 'inspect'], ['dlq', 'replay']];
    const helps = await shoalEach(levels.map((args) => [...args, '--help']));
    helps.forEach((help, i) => {
      expect(help.status).toBe(0);
      expect(help.stdout).toContain('Examples:');
      expect(help.stdout).toContain(`npx shoal dlq ${levels[i]![1] ?? 'list'}`);
    });
    const replay = helps[3]!.stdout;
    expect(replay).toContain('3    done, but some records were refused');
    expect(replay).toContain('shoal.replay.source');
  }, 180_000);
});
