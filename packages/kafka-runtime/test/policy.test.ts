import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import type { Pool } from '@shoal/db';
import {
  KafkaJSConnectionError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
} from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  classify,
  decideAction,
  DEFAULT_ORDERED_TOPICS,
  decideRejection,
  failurePolicyFromEnv,
  StaleReferenceError,
  TransientError,
} from '../src/index.js';

describe('policy from the environment', () => {
  it('takes a reason default and a per-entity override', () => {
    const { policy } = failurePolicyFromEnv({
      SHOAL_POLICY_STALE_REFERENCE: 'skip',
      SHOAL_POLICY_STALE_REFERENCE_DETECTOR: 'dlq',
    });
    expect(decideAction(policy, 'stale_reference', 'project')).toBe('skip');
    expect(decideAction(policy, 'stale_reference', 'detector')).toBe('dlq');
    expect(decideAction(policy, 'decode_error')).toBe('dlq');
  });

  it('names a bad policy value; takes a re-send window of hours, shorter than the dead letters live', () => {
    expect(() => failurePolicyFromEnv({ SHOAL_POLICY_DECODE_ERROR: 'drop' })).toThrow(
      'SHOAL_POLICY_DECODE_ERROR: expected one of dlq, skip (got "drop")',
    );
    expect(failurePolicyFromEnv({}).ledgerResendWindowMs).toBe(24 * 3_600_000);
    expect(
      failurePolicyFromEnv({ SHOAL_LEDGER_RESEND_WINDOW_HOURS: '2' }).ledgerResendWindowMs,
    ).toBe(2 * 3_600_000);
  });
});

describe('rejection policies and ordered topics from the environment', () => {
  it("reads a policy per rejection reason of the service's, record by default", () => {
    const { policy } = failurePolicyFromEnv({ SHOAL_POLICY_REJECTED_CLAIM_LOST: 'dlq' });
    expect(decideRejection(policy, 'claim_lost')).toBe('dlq');
    expect(decideRejection(policy, 'illegal_transition')).toBe('record');
    expect(() => failurePolicyFromEnv({ SHOAL_POLICY_REJECTED_CLAIM_LOST: 'skip' })).toThrow(
      'SHOAL_POLICY_REJECTED_CLAIM_LOST: expected one of record, dlq (got "skip")',
    );
  });

  it('orders the command and change topics by default, a list or none when told', () => {
    expect(failurePolicyFromEnv({}).parking.orderedTopics).toEqual(DEFAULT_ORDERED_TOPICS);
    expect(DEFAULT_ORDERED_TOPICS).not.toContain('occurrences');
    expect(
      failurePolicyFromEnv({ SHOAL_ORDERED_TOPICS: 'occurrences, status-changes' }).parking
        .orderedTopics,
    ).toEqual(['occurrences', 'status-changes']);
    expect(failurePolicyFromEnv({ SHOAL_ORDERED_TOPICS: 'none' }).parking.orderedTopics).toEqual(
      [],
    );
  });
});

describe('classify', () => {
  let db: IsolatedDatabase;
  beforeAll(async () => {
    db = await isolatedDatabase({ migrate: false });
    await db.pool.query(`
      CREATE TABLE groups (id int PRIMARY KEY);
      CREATE TABLE group_notes (group_id int NOT NULL REFERENCES groups (id), note text);
      CREATE TABLE issues (id bigint PRIMARY KEY);
      CREATE TABLE issue_history (issue_id bigint NOT NULL REFERENCES issues (id), note text);
      CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
      INSERT INTO counters VALUES (1, 0);`);
  });
  afterAll(() => db.drop());

  /** What PostgreSQL itself throws for `sql`. */
  const thrownBy = (sql: string, client: { query: Pool['query'] } = db.pool) =>
    client.query(sql).then(
      () => {
        throw new Error(`${sql} did not fail`);
      },
      (error: unknown) => error,
    );

  it("decides PostgreSQL's errors by their SQLSTATE", async () => {
    // the data's fault: the message that caused it is set aside
    expect(classify(await thrownBy('SELECT 99999999999999999::int'))).toEqual({
      kind: 'permanent',
      reason: 'processing_error',
    }); // 22003
    expect(classify(await thrownBy('SELECT 1/0'))).toMatchObject({ kind: 'permanent' }); // 22012
    expect(classify(await thrownBy('INSERT INTO counters VALUES (1, 0)'))).toMatchObject({
      kind: 'permanent',
    }); // 23505
    expect(classify(await thrownBy('SELECT nosuchcolumn FROM counters'))).toMatchObject({
      kind: 'permanent',
    }); // 42703
    // a foreign key to a row that is gone: a stale reference to that entity
    expect(classify(await thrownBy("INSERT INTO group_notes VALUES (7, 'x')"))).toEqual({
      kind: 'permanent',
      reason: 'stale_reference',
      entity: 'group',
    });
    // lifecycle's issues are an entity kind of their own
    expect(classify(await thrownBy("INSERT INTO issue_history VALUES (9, 'x')"))).toEqual({
      kind: 'permanent',
      reason: 'stale_reference',
      entity: 'issue',
    });
    // passing troubles: statement timeout, lock timeout, serialization failure
    const client = await db.pool.connect();
    const holder = await db.pool.connect();
    try {
      await client.query("SET statement_timeout = '50ms'");
      expect(classify(await thrownBy('SELECT pg_sleep(1)', client))).toEqual({ kind: 'transient' }); // 57014
      await client.query('SET statement_timeout = 0');
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM counters WHERE id = 1 FOR UPDATE');
      await client.query("SET lock_timeout = '50ms'");
      expect(
        classify(await thrownBy('UPDATE counters SET n = n + 1 WHERE id = 1', client)),
      ).toEqual({ kind: 'transient' }); // 55P03
      await holder.query('ROLLBACK');
      expect(
        classify(
          await thrownBy(
            "DO $$ BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END $$",
            client,
          ),
        ),
      ).toEqual({ kind: 'transient' });
    } finally {
      client.release();
      holder.release();
    }
  });

  it("takes the pg client's lost connection and the pool's timeout (no SQLSTATE) as transient", async () => {
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => undefined);
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    // wait for the connection to be gone: a query sent before that gets the server's 57P01 instead
    const ended = new Promise((resolve) => client.once('end', resolve));
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    await ended;
    const lost = await thrownBy('SELECT 1', client);
    expect(lost).not.toHaveProperty('code');
    expect(classify(lost)).toEqual({ kind: 'transient' });

    const tiny = new pg.Pool({ connectionString: db.url, max: 1, connectionTimeoutMillis: 100 });
    const held = await tiny.connect();
    try {
      const timeout = await tiny.connect().then(
        () => new Error('got a second connection'),
        (error: unknown) => error,
      );
      expect(classify(timeout)).toEqual({ kind: 'transient' });
    } finally {
      held.release();
      await tiny.end();
    }
  });

  it("decides kafkajs's errors by their own retriable flag", () => {
    expect(classify(new KafkaJSConnectionError('Connection error: ECONNREFUSED'))).toEqual({
      kind: 'transient',
    });
    expect(classify(new KafkaJSNonRetriableError('Invalid replication factor'))).toEqual({
      kind: 'permanent',
      reason: 'processing_error',
    });
    // retries exhausted: what was retried decides
    const exhausted = new KafkaJSNumberOfRetriesExceeded(
      new KafkaJSConnectionError('Connection timeout'),
      { retryCount: 5, retryTime: 1000 },
    );
    expect(classify(exhausted)).toEqual({ kind: 'transient' });
    // nested retriers (a send reconnecting): the outer one gives up on the inner one's exhaustion
    // with a non-retriable error whose cause is the connection error, as kafkajs's retry/index.js
    // builds it (its typings leave out the constructor's `{ cause }`)
    const gaveUp = (e: Error, cause: Error) =>
      Object.assign(new KafkaJSNonRetriableError(e), { cause });
    const unreachable = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED');
    const reconnects = new KafkaJSNumberOfRetriesExceeded(unreachable, {
      retryCount: 1,
      retryTime: 100,
    });
    expect(classify(gaveUp(reconnects, unreachable))).toEqual({ kind: 'transient' });
    // one refused outright is its own cause
    const refused = new KafkaJSNonRetriableError('Invalid replication factor');
    expect(classify(gaveUp(refused, refused))).toEqual({
      kind: 'permanent',
      reason: 'processing_error',
    });
    // no coordinator found: kafkajs calls it non-retriable, the broker's trouble all the same, and
    // a consumer's crash on it is wrapped as the others are
    // (its typings leave out the constructor's message, which kafkajs's own code passes)
    const NoCoordinator = KafkaJSGroupCoordinatorNotFound as unknown as new (
      message: string,
    ) => KafkaJSGroupCoordinatorNotFound;
    const noCoordinator = new NoCoordinator('Failed to find group coordinator');
    expect(noCoordinator.retriable).toBe(false);
    expect(classify(noCoordinator)).toEqual({ kind: 'transient' });
    expect(classify(gaveUp(noCoordinator, noCoordinator))).toEqual({ kind: 'transient' });
  });

  it("takes Shoal's own errors and socket errors at their word", () => {
    expect(
      classify(
        Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      ),
    ).toEqual({ kind: 'transient' });
    expect(
      classify(
        Object.assign(
          new Error(
            'Confluent_Schema_Registry - Error, status 400: connect ECONNREFUSED 127.0.0.1:8081',
          ),
          { name: 'ResponseError', status: 400 },
        ),
      ),
    ).toEqual({ kind: 'transient' });
    expect(classify(new TransientError('retry me'))).toEqual({ kind: 'transient' });
    expect(classify(new StaleReferenceError('group', 7))).toEqual({
      kind: 'permanent',
      reason: 'stale_reference',
      entity: 'group',
    });
    expect(classify(new TypeError('x is undefined'))).toEqual({
      kind: 'permanent',
      reason: 'processing_error',
    });
  });
});
