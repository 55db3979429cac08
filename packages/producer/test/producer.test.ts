import {
  Codec,
  ContractError,
  createRegistry,
  occurrenceKey,
  statusChangeContentId,
  type Occurrence,
  type StatusChange,
} from '@shoal/contracts';
import {
  connections,
  isolatedTopics,
  kafka,
  uniqueName,
  withAdmin,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createProducer } from '../src/index.js';

let ns: IsolatedTopics;
beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 3, statusChanges: 3 } });
});
afterAll(() => ns.drop());

const options = () => ({
  brokers: connections().KAFKA_BROKERS,
  registryUrl: connections().SCHEMA_REGISTRY_URL,
  namespace: ns.namespace,
});

const occurrence = (i: number): Occurrence => ({
  id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  project_id: 1 + (i % 3),
  fingerprint: [`fp-${i % 7}`],
  issue_title: `Error ${i}`,
  type: 1,
  detection_time: 1764000000 + i,
  event_id: `${String(i).padStart(32, 'a')}`.slice(-32),
  shoal: { trace_id: `trace-${i}` },
});

async function messagesOn(topic: string) {
  const offsets = await withAdmin((admin) => admin.fetchTopicOffsets(topic));
  return offsets.reduce((n, p) => n + Number(p.high), 0);
}

async function readTopic(topic: string, count: number) {
  const consumer = kafka().consumer({ groupId: uniqueName('read-') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen: { key: string; value: Buffer; headers: Record<string, string> }[] = [];
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        const headers = Object.fromEntries(
          Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]),
        );
        seen.push({ key: message.key!.toString(), value: message.value!, headers });
        if (seen.length === count) resolve();
      },
    });
  });
  await consumer.disconnect();
  return seen;
}

it('publishes occurrences and status changes concurrently: framed, keyed, acknowledged', async () => {
  const producer = createProducer(options());
  const values = Array.from({ length: 200 }, (_, i) => occurrence(i));
  const results = await Promise.all([
    ...values.map((o) => producer.publishOccurrence(o)),
    producer.publishStatusChange({
      project_id: 1,
      fingerprint: ['fp-0'],
      new_status: 1,
      new_substatus: null,
      payload_type: 'status_change',
    }),
  ]);
  await producer.close();
  expect(results.slice(0, 200).map((r) => r.id)).toEqual(values.map((o) => o.id));

  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
  const onTopic = await readTopic(ns.topics.occurrences, 200);
  const decoded = await Promise.all(onTopic.map((m) => codec.decode('occurrences', m.value)));
  expect(new Set(decoded.map((o) => o.id))).toEqual(new Set(values.map((o) => o.id)));
  for (const [i, m] of onTopic.entries()) {
    expect(m.value[0]).toBe(0); // Confluent framing
    expect(m.key).toBe(occurrenceKey(decoded[i]!));
    expect(m.headers['shoal.message-id']).toBe(`occurrence:${decoded[i]!.id}`);
    expect(m.headers['shoal.trace-id']).toBe(decoded[i]!.shoal!.trace_id);
  }
  const [change] = await readTopic(ns.topics.statusChanges, 1);
  expect(change!.key).toBe('1:fp-0');
  expect(await codec.decode('statusChanges', change!.value)).toMatchObject({ new_status: 1 });
  expect(change!.headers['shoal.message-id']).toBe(`status-change:${results[200]!.id}`);
});

it('gives a status change the id of the rule: a dated one its content id, else the idempotency id given', async () => {
  const producer = createProducer(options());
  const undated: StatusChange = { project_id: 2, fingerprint: ['fp-1'], new_status: 2 };
  const dated: StatusChange = { ...undated, update_date: '2026-11-30T01:00:00+00:00' };
  const published = [
    await producer.publishStatusChange(dated),
    await producer.publishStatusChange(dated, 'ignored-when-dated'),
    await producer.publishStatusChange(undated, 'a-caller-id'),
  ];
  await producer.close();
  const contentId = statusChangeContentId(dated);
  expect(published.map((p) => p.id)).toEqual([contentId, contentId, 'a-caller-id']);
  const onTopic = await readTopic(ns.topics.statusChanges, 4);
  expect(onTopic.map((m) => m.headers['shoal.message-id'])).toEqual(
    expect.arrayContaining([
      `status-change:${contentId}`,
      `status-change:${contentId}`,
      'status-change:a-caller-id',
    ]),
  );
});

it('refuses an invalid occurrence with a ContractError naming the fields, and sends nothing', async () => {
  const producer = createProducer(options());
  const before = await messagesOn(ns.topics.occurrences);
  const bad = { ...occurrence(1), project_id: -1, issue_title: '' };
  const error = await producer.publishOccurrence(bad).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ContractError);
  expect((error as ContractError).paths).toEqual(
    expect.arrayContaining(['/project_id', '/issue_title']),
  );
  await producer.close();
  expect(await messagesOn(ns.topics.occurrences)).toBe(before);
});

it('close flushes what is still lingering', async () => {
  const producer = createProducer({ ...options(), lingerMs: 60_000 });
  const before = await messagesOn(ns.topics.occurrences);
  const pending = [
    producer.publishOccurrence(occurrence(500)),
    producer.publishOccurrence(occurrence(501)),
  ];
  await producer.close();
  await Promise.all(pending);
  expect(await messagesOn(ns.topics.occurrences)).toBe(before + 2);
  await expect(producer.publishOccurrence(occurrence(502))).rejects.toThrow(
    'this producer is closed',
  );
});

it('rejects, never drops silently, when the broker cannot be reached', async () => {
  const producer = createProducer({
    ...options(),
    brokers: ['127.0.0.1:1'],
    retry: { retries: 1, initialRetryTime: 50 },
  });
  await expect(producer.publishOccurrence(occurrence(600))).rejects.toThrow(
    /ECONNREFUSED|Connection error|connect/i,
  );
});
