import { dlqTopic, occurrenceKey, type Occurrence } from '@shoal/contracts';
import { DISCARD_HEADER, DLQ_HEADER } from '@shoal/kafka-runtime';
import { kafka, uniqueName, waitFor } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POISON_TITLE } from '../../kafka-runtime/test/counter-service/handler.js';
import { counterRun, occurrence, type CounterRun } from '../../kafka-runtime/test/support.js';
import { shoalRunners } from './support.js';

// `shoal dlq discard` as operators run it, against a real consumer (the runtime's counter service)
// whose occurrences topic keeps its keys' order: a poison head parks its key; discarding the head's
// dead letter releases the key through a discard marker the consumer reads, and the parked messages
// apply in order. DATABASE_URL is the consumer's own database, where its parked_keys are read.

let run: CounterRun;
let topic: string;
const { shoal, shoalOnTerminal } = shoalRunners(() => ({ DATABASE_URL: run.db.url }));

const jsonOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

/** Key K (project 1): a poison head, then five good messages parked behind it. */
const onK = (i: number, extra: Partial<Occurrence> = {}): Occurrence => ({
  ...occurrence(i, { seed: uniqueName('discard-k') }),
  project_id: 1,
  fingerprint: ['fp-discard'],
  ...extra,
});
const head = onK(0, { issue_title: POISON_TITLE });
const queued = [1, 2, 3, 4, 5].map((i) => onK(i));
const key = occurrenceKey(head);

const headOf = async (k: string) =>
  (
    await run.db.pool.query<{ head_message_id: string | null }>(
      'SELECT head_message_id FROM parked_keys WHERE message_key = $1',
      [k],
    )
  ).rows[0]?.head_message_id;
const parkedCount = async (k: string) =>
  (
    await run.db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM parked_messages WHERE message_key = $1',
      [k],
    )
  ).rows[0]!.n;
/** The occurrence ids of `values` in the order the consumer applied them (its group events). */
const appliedOrder = async (values: Occurrence[]) =>
  (
    await run.db.pool.query<{ id: string }>(
      `SELECT payload->>'occurrence_id' AS id FROM outbox_events
       WHERE topic = $1 AND payload->>'occurrence_id' = ANY($2) ORDER BY seq, ordinal`,
      [run.ns.topics.groupEvents, values.map((v) => v.id)],
    )
  ).rows.map((r) => r.id);

beforeAll(async () => {
  run = await counterRun(uniqueName('cli-discard-'), { SHOAL_ORDERED_TOPICS: 'occurrences' });
  topic = run.ns.topics.occurrences;
  await run.produce([head, ...queued]);
  await run.settled();
}, 180_000);

afterAll(async () => {
  await run?.stop();
});

describe('shoal dlq discard', () => {
  it('shows the key a dead letter parks; --dry-run, a no on the terminal and a missing --yes change nothing', async () => {
    expect(await headOf(key)).toBe(`occurrence:${head.id}`);
    expect(await parkedCount(key)).toBe(5);

    const inspected = shoal(['dlq', 'inspect', '--topic', topic, '--offset', '0', '--json']);
    expect(inspected.status).toBe(0);
    expect(JSON.parse(inspected.stdout)).toMatchObject({
      discardedBy: null,
      parks: { schema: 'counter', group: run.group, key, partition: 0, parkedMessages: 5 },
    });

    const dry = shoal([
      'dlq',
      'discard',
      '--topic',
      topic,
      '--offset',
      '0',
      '--reason',
      'x',
      '--dry-run',
    ]);
    expect(dry.status).toBe(0);
    expect(dry.stdout).toContain(
      `dlq offset 0 (processing_error, key ${key}): would discard; releases key ${key} of group ${run.group} (5 parked messages)`,
    );
    expect(dry.stderr).toContain('nothing changed');
    const declined = shoalOnTerminal(
      ['dlq', 'discard', '--topic', topic, '--offset', '0', '--reason', 'x'],
      'n',
    );
    expect(declined.output).toContain(
      `Discard: 1 to discard from ${dlqTopic(topic)} (1 releasing a parked key)`,
    );
    expect(declined.output).toContain('nothing changed');
    expect(declined.status).toBe(1);
    const noYes = shoal(['dlq', 'discard', '--topic', topic, '--offset', '0', '--reason', 'x']);
    expect(noYes.status).toBe(2);
    expect(noYes.stderr).toContain('--yes is required');
    const noReason = shoal(['dlq', 'discard', '--topic', topic, '--offset', '0', '--yes']);
    expect(noReason.status).toBe(2);
    expect(noReason.stderr).toContain("required option '--reason <why>' not specified");
    const noRecord = shoal([
      'dlq',
      'discard',
      '--topic',
      topic,
      '--offset',
      '7',
      '--reason',
      'x',
      '--yes',
    ]);
    expect(noRecord.status).toBe(2);
    expect(noRecord.stderr).toContain(`--offset: ${dlqTopic(topic)} holds no record at offset 7`);

    const help = shoal(['dlq', 'discard', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('npx shoal dlq discard --topic');
    expect(help.stdout).toContain('3    done, but some records were refused');

    expect(await headOf(key)).toBe(`occurrence:${head.id}`);
    const { rows } = await run.db.pool.query(`SELECT to_regnamespace('shoal_cli') AS schema`);
    expect(rows[0].schema).toBeNull();
  });

  it("releases the head's key: its parked messages, then later ones, apply in order; list hides it, replay skips it", async () => {
    const discarded = shoal([
      'dlq',
      'discard',
      '--topic',
      topic,
      '--offset',
      '0',
      '--reason',
      'poison, superseded upstream',
      '--actor',
      'ops@example',
      '--yes',
      '--json',
    ]);
    expect(discarded.stderr).toContain(
      'discarded 1 dead letters by ops@example, 1 parked keys released',
    );
    expect(discarded.status).toBe(0);
    const [step] = jsonOf(discarded.stdout);
    expect(step).toMatchObject({
      action: 'discard',
      dlqOffset: 0,
      messageId: `occurrence:${head.id}`,
      parks: { key, parkedMessages: 5 },
      discardId: expect.any(String),
    });

    await waitFor(
      'the discarded head to release its key',
      async () => (await headOf(key)) === undefined,
      60_000,
    );
    expect(await parkedCount(key)).toBe(0);
    const later = onK(6);
    await run.produce([later]);
    await waitFor(
      'the later message to apply',
      async () => (await appliedOrder([later])).length === 1,
      60_000,
    );
    expect(await appliedOrder([head, ...queued, later])).toEqual(
      [...queued, later].map((v) => v.id),
    );

    const { rows } = await run.db.pool.query(
      'SELECT actor, reason, released_key, message_id FROM shoal_cli.dlq_discards',
    );
    expect(rows).toEqual([
      {
        actor: 'ops@example',
        reason: 'poison, superseded upstream',
        released_key: key,
        message_id: `occurrence:${head.id}`,
      },
    ]);

    const list = shoal(['dlq', 'list', '--topic', topic, '--json']);
    expect(list.status).toBe(0);
    expect(list.stdout).toBe('');
    expect(list.stderr).toContain('1 discarded dead letters not shown (--discarded)');
    const all = shoal(['dlq', 'list', '--topic', topic, '--discarded']);
    expect(all.stdout).toMatch(/│ 0 .*discarded by ops@example/);

    const replay = shoal(['dlq', 'replay', '--topic', topic, '--yes']);
    expect(replay.status).toBe(0);
    expect(replay.stdout).toContain(
      `dlq offset 0 (processing_error, key ${key}) -> ${topic}: skipped, discarded by ops@example`,
    );

    const again = shoal([
      'dlq',
      'discard',
      '--topic',
      topic,
      '--offset',
      '0',
      '--reason',
      'x',
      '--yes',
    ]);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('skipped, discarded by ops@example');

    const inspected = shoal(['dlq', 'inspect', '--topic', topic, '--offset', '0']);
    expect(inspected.stdout).toContain('discarded    discarded by ops@example');
    expect(inspected.stdout).toContain('parks        no key');
  }, 180_000);

  it('a discard marker whose head no longer heads the key, or naming no group, changes nothing', async () => {
    // key K parked again, behind a new poison head
    const newHead = onK(10, { issue_title: POISON_TITLE });
    const behind = onK(11);
    await run.produce([newHead, behind]);
    await waitFor('the new head to park K', async () => (await parkedCount(key)) === 1, 60_000);

    // a marker for the old head (a discard run re-sent after its key was released), and one for
    // the current head that names no group
    const producer = kafka().producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: [
        {
          key,
          value: null,
          headers: {
            [DLQ_HEADER.consumerGroup]: run.group,
            [DISCARD_HEADER.head]: `occurrence:${head.id}`,
          },
        },
        // the current head, but no group: nobody's to act on
        { key, value: null, headers: { [DISCARD_HEADER.head]: `occurrence:${newHead.id}` } },
      ],
    });
    await producer.disconnect();
    const last = onK(12);
    await run.produce([last]);
    await waitFor(
      'the marker and the last message to be read',
      async () => (await parkedCount(key)) === 2,
      60_000,
    );
    expect(await headOf(key)).toBe(`occurrence:${newHead.id}`);
    expect(await appliedOrder([behind, last])).toEqual([]);
  }, 120_000);
});
