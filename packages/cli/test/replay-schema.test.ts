import { dlqTopic } from '@shoal/contracts';
import { isolatedDatabase, isolatedTopics, kafka, readAll } from '@shoal/testing';
import { afterAll, expect, it } from 'vitest';
import { codecFor, encodeAll, occurrence } from '../../kafka-runtime/test/support.js';
import { deadLetterHeaders, shoalRunners } from './support.js';

// `shoal dlq replay` refuses a value no longer valid for the target topic's registered schema,
// naming the field, and replays it with --force (the bin as a process, the real stack).

const ns = await isolatedTopics();
const db = await isolatedDatabase({ migrate: false });
afterAll(() => Promise.all([ns.drop(), db.drop()]));
const { shoal } = shoalRunners(() => ({ DATABASE_URL: db.url }));

it('a value invalid for the schema is refused, naming the field, unless --force', async () => {
  const topic = ns.topics.occurrences;
  const [encoded] = await encodeAll(codecFor(ns.topics), [occurrence(1)]);
  const valid = { value: encoded!.value! };
  // the same registry frame (schema id) around a payload without issue_title
  const { issue_title: _dropped, ...rest } = JSON.parse(
    valid.value.subarray(5).toString(),
  ) as Record<string, unknown>;
  const invalid = Buffer.concat([valid.value.subarray(0, 5), Buffer.from(JSON.stringify(rest))]);
  const producer = kafka().producer();
  await producer.connect();
  await producer.send({
    topic: dlqTopic(topic),
    messages: [
      { key: 'valid', value: valid.value, headers: deadLetterHeaders(topic, 'm-valid') },
      { key: 'invalid', value: invalid, headers: deadLetterHeaders(topic, 'm-invalid') },
      { key: 'not-json', value: 'plain text', headers: deadLetterHeaders(topic, 'm-text') },
    ],
  });
  await producer.disconnect();

  const checked = shoal(['dlq', 'replay', '--topic', topic, '--yes']);
  expect(checked.status).toBe(3);
  expect(checked.stdout).toContain(
    `dlq offset 0 (processing_error, key valid) -> ${topic}: replayed`,
  );
  expect(checked.stdout).toMatch(
    new RegExp(
      `dlq offset 1: refused: the value is not valid for ${topic.replace(/\./g, '\\.')}'s schema \\(--force replays it anyway\\): .*issue_title`,
    ),
  );
  expect(checked.stdout).toMatch(/dlq offset 2: refused: the value is not valid .*/);
  expect((await readAll(topic)).map((r) => r.key?.toString())).toEqual(['valid']);

  const forced = shoal(['dlq', 'replay', '--topic', topic, '--yes', '--force']);
  expect(forced.status).toBe(0);
  expect(forced.stdout).toContain('dlq offset 0 (processing_error, key valid)');
  expect(forced.stdout).toContain('skipped, replayed by run');
  expect((await readAll(topic)).map((r) => r.key?.toString()).sort()).toEqual([
    'invalid',
    'not-json',
    'valid',
  ]);
}, 120_000);
