import { randomUUID } from 'node:crypto';
import { createPool, migrate, type Pool } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import {
  isolatedDatabase,
  isolatedTopics,
  kafka,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER, OutboxRelay } from '../src/index.js';
import { codecFor, migrationDirs, readAll, unpublished, waitFor } from './support.js';

let ns: IsolatedTopics;
let db: IsolatedDatabase;
const pools: Record<string, Pool> = {};

// two services of the same shape on one database, each in its schema
const services = ['service_a', 'service_b'];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { groupEvents: 1 } });
  db = await isolatedDatabase({ migrate: false });
  for (const schema of services) {
    await migrate({ databaseUrl: db.url, direction: 'up', dirs: migrationDirs, schema });
    pools[schema] = createPool(db.url, { schema });
  }
});
afterAll(async () => {
  await Promise.all(Object.values(pools).map((pool) => pool.end()));
  await db?.drop();
  await ns?.drop();
});

/** One outbox row in `schema` holding a group event; returns its event id. */
async function outboxRow(schema: string): Promise<string> {
  const eventId = randomUUID();
  const event = {
    eventId,
    topic: ns.topics.groupEvents,
    key: '1',
    payload: {
      event_id: eventId,
      event_type: 'occurrence_grouped',
      occurred_at: new Date().toISOString(),
      group_id: 1,
      project_id: 1,
      occurrence_id: randomUUID(),
    },
    headers: {},
  };
  await pools[schema]!.query(`INSERT INTO outbox (events, event_count) VALUES ($1::json, 1)`, [
    JSON.stringify([event]),
  ]);
  return eventId;
}

async function relayOnce(schema: string): Promise<void> {
  const relay = new OutboxRelay({
    pool: pools[schema]!,
    kafka: kafka(),
    codec: codecFor(ns.topics),
    logger: createLogger('schemas-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
  });
  await relay.start();
  try {
    await waitFor(`${schema}'s relay`, async () => (await unpublished(pools[schema]!)) === 0);
  } finally {
    await relay.stop();
  }
}

const publishedIds = async () =>
  (await readAll(ns.topics.groupEvents)).map((r) => r.headers[HEADER.messageId]);

describe('a service in its schema', () => {
  it("has a relay that publishes its own outbox only, never another service's", async () => {
    const a = await outboxRow('service_a');
    const b = await outboxRow('service_b');

    await relayOnce('service_a');
    expect(await publishedIds()).toEqual([a]);
    expect(await unpublished(pools.service_b!)).toBe(1);

    await relayOnce('service_b');
    expect(await publishedIds()).toEqual([a, b]);
  });
});
