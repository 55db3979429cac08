import { randomUUID } from 'node:crypto';
import type { RunningConsumer } from '@shoal/kafka-runtime';
import type { ShoalProducer } from '@shoal/producer';
import { waitFor, type IsolatedDatabase, type IsolatedTopics } from '@shoal/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIssue, type Reader } from '../src/api/store.js';
import { OutcomeWaiter } from '../src/api/waiter.js';
import { createPool, type Pool } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import {
  bearer,
  decidedHere,
  openIssues,
  startDecide,
  testApi,
  TOKENS,
  closeApiTest,
  openApiTestBase,
} from './api-support.js';

/**
 * How a waiting reply learns its outcome: the NOTIFY of the decided command ids (migration
 * 1766240000000), and the slow poll when a notification is lost (nobody listened, or no trigger).
 * And how a request reads its issue first: the reads of one turn in one statement.
 */

let topics: IsolatedTopics;
let db: IsolatedDatabase;
let producer: ShoalProducer;
let decide: RunningConsumer;

beforeAll(async () => {
  ({ topics, db, producer } = await openApiTestBase());
  decide = await startDecide(topics, db);
  await openIssues(producer, db.pool, [1, 2, 3]);
  // warm: the first command of a fresh producer and consumer takes a while, and is not what is timed
  expect((await noteTimed(200, 1)).status).toBe(200);
});
afterAll(() => closeApiTest({ decide, producer, topics, db }));

async function noteTimed(pollMs: number, issue: number, prefer = 'wait=30') {
  const api = await testApi(db, producer, { SHOAL_API_OUTCOME_POLL_MS: String(pollMs) });
  try {
    const started = Date.now();
    const answer = await api.app.inject({
      method: 'POST',
      url: `/v1/issues/${issue}/notes`,
      headers: { ...bearer(TOKENS.a), prefer },
      payload: { note: 'timed' },
    });
    return { status: answer.statusCode, ms: Date.now() - started, api };
  } finally {
    await api.close();
  }
}

/** `pool`, counting the outcome reads (store.ts readOutcomes) made through it. */
function counting(pool: Pool, reads: { outcomes: number }): Pool {
  return new Proxy(pool, {
    get(target, key) {
      if (key === 'query')
        return (text: unknown, ...rest: unknown[]) => {
          if (typeof text === 'string' && text.includes('FROM lifecycle_commands c'))
            reads.outcomes++;
          return (target.query as (...a: unknown[]) => unknown)(text, ...rest);
        };
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function'
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}

describe('the outcome of a waiting reply', () => {
  it('arrives by NOTIFY: with the poll a minute apart, the reply comes at once', async () => {
    const { status, ms } = await noteTimed(60_000, 1);
    expect(status).toBe(200);
    // far below the poll's minute (a loaded machine takes a few seconds, not sixty)
    expect(ms).toBeLessThan(15_000);
  });

  it('from decide in this process: answered from what it handed over, nothing read back; from another, read', async () => {
    for (const here of [true, false]) {
      const reads = { outcomes: 0 };
      const api = await testApi(
        { pool: counting(db.pool, reads) },
        producer,
        { SHOAL_API_OUTCOME_POLL_MS: '60000' },
        here ? decidedHere : null,
      );
      try {
        const answer = await api.app.inject({
          method: 'POST',
          url: '/v1/issues/1/notes',
          headers: { ...bearer(TOKENS.a), prefer: 'wait=30' },
          payload: { note: here ? 'handed over' : 'read back' },
        });
        expect(answer.statusCode).toBe(200);
        expect(reads.outcomes, here ? 'handed over' : 'read back').toBe(here ? 0 : 1);
      } finally {
        await api.close();
      }
    }
  });

  it("an outcome handed over by a transaction other than the one notified (a retry's, another member's) is not the answer: it is read", async () => {
    const api = await testApi(db, producer, { SHOAL_API_OUTCOME_POLL_MS: '60000' });
    const id = randomUUID();
    // what a rolled-back transaction handed over for the command: refused, in a transaction that never commits
    const rolledBack = setInterval(
      () =>
        decidedHere.offer('1', {
          commands: [
            {
              command_id: id,
              issue_id: 2,
              command: 'add_note',
              actor: 'agent-a',
              outcome: 'rejected',
              reason: 'claim_conflict',
              detail: 'from a transaction rolled back',
              allowed_transitions: [],
              version: 1,
              issue: null,
              decided_at: new Date().toISOString(),
            },
          ],
          issue: () => undefined,
        }),
      1,
    );
    try {
      const answer = await api.app.inject({
        method: 'POST',
        url: '/v1/issues/2/notes',
        headers: { ...bearer(TOKENS.a), prefer: 'wait=30', 'idempotency-key': id },
        payload: { note: 'decided once' },
      });
      expect(answer.statusCode).toBe(200);
      expect(answer.json()).toMatchObject({ command_id: id, outcome: 'applied' });
    } finally {
      clearInterval(rolledBack);
      await api.close();
    }
  });

  it('a lost notification (no trigger): the slow poll still answers; with no poll in reach, 202', async () => {
    await db.pool.query('DROP TRIGGER lifecycle_commands_decided ON lifecycle_commands');
    try {
      expect((await noteTimed(300, 2)).status).toBe(200);
      expect((await noteTimed(60_000, 2, 'wait=2')).status).toBe(202);
    } finally {
      await db.pool.query(
        `CREATE TRIGGER lifecycle_commands_decided AFTER INSERT ON lifecycle_commands
         REFERENCING NEW TABLE AS decided FOR EACH STATEMENT
         EXECUTE FUNCTION notify_lifecycle_commands_decided()`,
      );
    }
  });

  it('a LISTEN connection killed: the waiter listens again, and NOTIFY answers again', async () => {
    const api = await testApi(db, producer, { SHOAL_API_OUTCOME_POLL_MS: '60000' });
    try {
      const listener = async () =>
        (
          await db.pool.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'`,
          )
        ).rows.map((r) => r.pid);
      const [first] = await listener();
      expect(first).toBeDefined();
      await db.pool.query('SELECT pg_terminate_backend($1)', [first]);
      await waitFor('a new LISTEN connection', async () => {
        const pids = await listener();
        return pids.length === 1 && pids[0] !== first;
      });
      const started = Date.now();
      const answer = await api.app.inject({
        method: 'POST',
        url: '/v1/issues/3/notes',
        headers: { ...bearer(TOKENS.a), prefer: 'wait=30' },
        payload: { note: 'after the kill' },
      });
      expect(answer.statusCode).toBe(200);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await api.close();
    }
  });
});

describe('closing', () => {
  it('while a lost LISTEN connection is being made again gives that connection back: the pool can end', async () => {
    // one connection: the waiter's next LISTEN connection waits for the one this test holds
    const pool = createPool(db.url, { max: 1 });
    const waiter = new OutcomeWaiter({
      pool,
      pollMs: 20,
      logger: createLogger('lifecycle-api-test', 'fatal'),
      read: async () => new Map(),
    });
    await waiter.start();
    const listening = await db.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %' AND application_name = 'shoal'`,
    );
    const held = pool.connect();
    await db.pool.query('SELECT pg_terminate_backend($1)', [listening.rows[0]!.pid]);
    const client = await held;
    await waitFor('the waiter asking for a connection again', async () => pool.waitingCount === 1);
    await waiter.close();
    client.release();
    const ended = await Promise.race([
      pool.end().then(() => 'ended'),
      new Promise((resolve) => setTimeout(() => resolve('still holding a connection'), 5_000)),
    ]);
    expect(ended).toBe('ended');
  });
});

describe('the trigger', () => {
  it('sends every decided id of one statement, at most 200 per notification (under 8,000 bytes)', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const payloads: string[] = [];
    client.on('notification', (m) => payloads.push(m.payload ?? ''));
    try {
      await client.query('LISTEN "lifecycle.lifecycle_commands"');
      const ids = Array.from({ length: 450 }, () => randomUUID());
      await db.pool.query(
        `INSERT INTO lifecycle_commands (command_id, issue_id, command, actor, outcome, decided_at)
         SELECT id, 999, 'add_note', 'x', 'applied', now() FROM unnest($1::uuid[]) AS id`,
        [ids],
      );
      await waitFor('three notifications', async () => payloads.length === 3, 10_000);
      // `<txid>;<id>,…`: the inserting transaction's id, then its ids
      const txids = payloads.map((p) => p.split(';')[0]!);
      const lists = payloads.map((p) => p.split(';')[1]!);
      expect(new Set(txids).size).toBe(1);
      expect(txids[0]).toMatch(/^\d+$/);
      expect(lists.map((p) => p.split(',').length)).toEqual([200, 200, 50]);
      expect(Math.max(...payloads.map((p) => Buffer.byteLength(p)))).toBeLessThan(8000);
      expect(lists.flatMap((p) => p.split(',')).sort()).toEqual([...ids].sort());
    } finally {
      await client.end();
    }
  });
});

describe('the issue reads of requests', () => {
  it('those of one turn are one statement; an id no issue can have is unknown, and fails none of the others', async () => {
    const statements: string[] = [];
    const counting: Reader = {
      query: (text, values) => {
        statements.push(text);
        return db.pool.query(text, values);
      },
    };
    const [one, three, huge] = await Promise.all([
      readIssue(counting, 1),
      readIssue(counting, 3),
      readIssue(counting, 1e20),
    ]);
    expect([one?.issue_id, three?.issue_id, huge]).toEqual([1, 3, undefined]);
    expect(statements).toHaveLength(1);
  });

  it('a statement that fails fails every read of its turn: none is left waiting', async () => {
    const ended = new pg.Pool({ connectionString: db.url });
    await ended.end();
    const reads = await Promise.allSettled([readIssue(ended, 1), readIssue(ended, 2)]);
    expect(reads.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });
});
