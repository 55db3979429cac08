import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { connections, isolatedTopics, type IsolatedTopics } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPATIBILITY,
  Codec,
  ContractError,
  checkSchemas,
  createRegistry,
  loadSchema,
  registerSchemas,
  topicKeys,
  valueSubject,
} from '../src/index.js';
import { example } from './examples.js';

const registry = createRegistry(connections().SCHEMA_REGISTRY_URL);
let ns: IsolatedTopics;
let codec: Codec;

beforeAll(async () => {
  ns = await isolatedTopics({ register: false });
  codec = new Codec(registry, ns.topics);
});
afterAll(() => ns.drop());

async function caught(promise: Promise<unknown>): Promise<ContractError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ContractError);
  return error as ContractError;
}

describe('against the real registry', () => {
  it('registers every schema, and re-registering gives the same ids', async () => {
    const first = await registerSchemas(registry, ns.topics);
    expect(first).toHaveLength(topicKeys.length);
    const again = await registerSchemas(registry, ns.topics);
    expect(again.map((r) => r.id)).toEqual(first.map((r) => r.id));
    const subject = valueSubject(ns.topics.occurrences);
    expect(await registry.getLatestSchemaId(subject)).toBe(first[0]!.id);
    const config = await fetch(`${connections().SCHEMA_REGISTRY_URL}/config/${subject}`).then((r) =>
      r.json(),
    );
    expect(config).toMatchObject({ compatibilityLevel: COMPATIBILITY });
  });

  it('encodes with the Confluent framing and decodes back', async () => {
    const value = example('occurrence.shoal-extended.json') as never;
    const bytes = await codec.encode('occurrences', value);
    const id = await registry.getLatestSchemaId(valueSubject(ns.topics.occurrences));
    expect(bytes[0]).toBe(0);
    expect(bytes.readUInt32BE(1)).toBe(id);
    expect(JSON.parse(bytes.subarray(5).toString())).toEqual(value);
    expect(await codec.decode('occurrences', bytes)).toEqual(value);
  });

  it('decodes a Sentry occurrence sent as plain JSON (no frame) against the registered schema', async () => {
    const sentry = example('occurrence.sentry-monitor-failure.json');
    expect(await codec.decode('occurrences', Buffer.from(JSON.stringify(sentry)))).toEqual(sentry);
  });

  it('refuses a schema-invalid payload at encode, naming the fields', async () => {
    const bad = {
      ...example('occurrence.sentry-event-id-only.json'),
      project_id: 'seven',
      fingerprint: [],
    };
    const error = await caught(codec.encode('occurrences', bad as never));
    expect(error.reason).toBe('schema_invalid');
    expect(error.paths).toEqual(expect.arrayContaining(['/project_id', '/fingerprint']));
  });

  it('reports the field paths of an invalid framed payload at decode', async () => {
    const id = await registry.getLatestSchemaId(valueSubject(ns.topics.statusChanges));
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(id, 1);
    const payload = { ...example('status-change.sentry-resolve.json'), new_status: 7 };
    delete (payload as Record<string, unknown>).project_id;
    const error = await caught(
      codec.decode('statusChanges', Buffer.concat([frame, Buffer.from(JSON.stringify(payload))])),
    );
    expect(error.reason).toBe('schema_invalid');
    expect(error.paths).toEqual(expect.arrayContaining(['/project_id', '/new_status']));
  });

  it('reports undecodable bytes as decode_error', async () => {
    expect(
      (await caught(codec.decode('occurrences', Buffer.from([0xff, 0xfe, 0x00])))).reason,
    ).toBe('decode_error');
    expect((await caught(codec.decode('occurrences', Buffer.alloc(0)))).reason).toBe(
      'decode_error',
    );
    expect((await caught(codec.decode('occurrences', null))).reason).toBe('decode_error');
    const unknownId = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), Buffer.from('{}')]);
    const error = await caught(codec.decode('occurrences', unknownId));
    expect(error.reason).toBe('decode_error');
    expect(error.message).toContain('unknown schema id');
  });

  it("refuses a record framed with another topic's schema id, naming the id and the subject", async () => {
    await registerSchemas(registry, ns.topics, ['occurrences', 'statusChanges']);
    const statusChange = example('status-change.sentry-resolve.json');
    const framedAsStatusChange = await codec.encode('statusChanges', statusChange as never);
    const statusChangeId = framedAsStatusChange.readUInt32BE(1);
    // valid for the schema its frame names, so only the subject check stops it
    expect(await codec.decode('statusChanges', framedAsStatusChange)).toEqual(statusChange);
    const error = await caught(codec.decode('occurrences', framedAsStatusChange));
    expect(error.reason).toBe('decode_error');
    expect(error.message).toContain(`schema id ${statusChangeId} `);
    expect(error.message).toContain(valueSubject(ns.topics.occurrences));

    // ids name content: the same schema registered for another namespace's topic is its schema too
    const other = await isolatedTopics({ register: false });
    try {
      await registerSchemas(registry, other.topics, ['occurrences']);
      const occurrence = example('occurrence.shoal-extended.json');
      const framed = await codec.encode('occurrences', occurrence as never);
      expect(await new Codec(registry, other.topics).decode('occurrences', framed)).toEqual(
        occurrence,
      );
    } finally {
      await other.drop();
    }
  });

  it('refuses, naming the field, an integer beyond 2^53 − 1 at decode and at encode (never rounded)', async () => {
    await registerSchemas(registry, ns.topics, ['occurrences']);
    const occurrence = example('occurrence.shoal-extended.json') as Record<string, unknown>;
    const framed = await codec.encode('occurrences', occurrence as never);
    // a 64-bit Sentry id as the bytes carry it: JSON.parse would round it to 2^53 + 2
    const body = JSON.stringify(occurrence).replace(
      `"project_id":${occurrence.project_id as number}`,
      '"project_id":9007199254740993',
    );
    const error = await caught(
      codec.decode('occurrences', Buffer.concat([framed.subarray(0, 5), Buffer.from(body)])),
    );
    expect(error.reason).toBe('schema_invalid');
    expect(error.paths).toEqual(['/project_id']);
    const atEncode = await caught(
      codec.encode('occurrences', {
        ...occurrence,
        shoal: { detector_id: 2 ** 60 },
      } as never),
    );
    expect(atEncode.paths).toEqual(['/shoal/detector_id']);
    expect(atEncode.message).toMatch(/9007199254740991/);
  });

  it('lets a new optional field into a closed object, and refuses a breaking change', async () => {
    const subject = valueSubject(`${ns.namespace}evolution`);
    const base = loadSchema('occurrences');
    await registry.register(
      { type: SchemaType.JSON, schema: JSON.stringify(base) },
      { subject, compatibility: COMPATIBILITY },
    );

    const addedToClosed = structuredClone(base) as unknown as {
      properties: { shoal: { properties: Record<string, object> } };
    };
    addedToClosed.properties.shoal.properties.team = { type: 'string' };
    await expect(
      registry.register(
        { type: SchemaType.JSON, schema: JSON.stringify(addedToClosed) },
        { subject, compatibility: COMPATIBILITY },
      ),
    ).resolves.toMatchObject({ id: expect.any(Number) });

    // the trap: a typed field added to the open top level could clash with what old messages hold
    const addedToOpen = structuredClone(addedToClosed) as unknown as {
      properties: Record<string, object>;
    };
    addedToOpen.properties.team_at_top = { type: 'string' };
    await expect(
      registry.register(
        { type: SchemaType.JSON, schema: JSON.stringify(addedToOpen) },
        { subject, compatibility: COMPATIBILITY },
      ),
    ).rejects.toThrow(/incompatible/i);
  });

  it('check reports the local schemas as breaking when the registry holds a wider version', async () => {
    const wider = structuredClone(loadSchema('occurrences')) as unknown as {
      properties: { level: { enum: string[] } };
    };
    wider.properties.level.enum.push('critical');
    const topics = { ...ns.topics, occurrences: `${ns.namespace}wider.occurrences` };
    await registry.register(
      { type: SchemaType.JSON, schema: JSON.stringify(wider) },
      { subject: valueSubject(topics.occurrences), compatibility: COMPATIBILITY },
    );
    const [occurrences] = await checkSchemas(registry, topics, ['occurrences']);
    expect(occurrences).toMatchObject({
      state: 'breaking',
      subject: valueSubject(topics.occurrences),
    });
    const [fresh] = await checkSchemas(
      registry,
      { ...ns.topics, occurrences: `${ns.namespace}never-registered` },
      ['occurrences'],
    );
    expect(fresh!.state).toBe('new');
  });

  it('check finds the group events at their grain (new event types, new optional fields) compatible with the version before them', async () => {
    const before = structuredClone(loadSchema('groupEvents')) as unknown as {
      properties: Record<string, unknown> & { event_type: { enum: string[] } };
    };
    before.properties.event_type.enum = ['group_created', 'occurrence_grouped', 'status_changed'];
    for (const field of [
      'subtitle',
      'event_timestamp',
      'times_seen_delta',
      'first_seen',
      'last_seen',
      'new_environments',
    ])
      delete before.properties[field];
    const topics = { ...ns.topics, groupEvents: `${ns.namespace}before.group-events` };
    await registry.register(
      { type: SchemaType.JSON, schema: JSON.stringify(before) },
      { subject: valueSubject(topics.groupEvents), compatibility: COMPATIBILITY },
    );
    const [groupEvents] = await checkSchemas(registry, topics, ['groupEvents']);
    expect(groupEvents).toMatchObject({ state: 'compatible', messages: [] });
  });
});
