import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  classify,
  decideAction,
  failurePolicyFromEnv,
  StaleReferenceError,
  TransientError,
} from '../src/index.js';
import { prune } from '../src/store.js';

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

  it('names a bad policy value and a ledger retention shorter than the dead letters live', () => {
    expect(() => failurePolicyFromEnv({ SHOAL_POLICY_DECODE_ERROR: 'drop' })).toThrow(
      'SHOAL_POLICY_DECODE_ERROR: expected one of dlq, skip (got "drop")',
    );
    expect(() => failurePolicyFromEnv({ SHOAL_LEDGER_RETENTION_HOURS: '24' })).toThrow(
      /SHOAL_LEDGER_RETENTION_HOURS: must be at least the dead-letter topics' retention \(336 hours\)/,
    );
  });
});

describe('classify', () => {
  it('tells transient from permanent in one place', () => {
    expect(
      classify(Object.assign(new Error('could not serialize access'), { code: '40001' })),
    ).toEqual({ kind: 'transient' });
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

describe('pruning', () => {
  let db: IsolatedDatabase;
  beforeAll(async () => {
    db = await isolatedDatabase();
  });
  afterAll(() => db.drop());

  it('drops ledger entries past retention and outbox rows published a day ago, nothing else', async () => {
    await db.pool.query(`
      INSERT INTO processed_messages (consumer_group, message_id, processed_at) VALUES
        ('g', 'old', now() - interval '15 days'), ('g', 'recent', now() - interval '13 days');
      INSERT INTO outbox (events, event_count, published_at) VALUES
        ('[{}]', 1, now() - interval '2 days'), ('[{}]', 1, now()), ('[{}]', 1, NULL);`);
    expect(await prune(db.pool, 14 * 24 * 3_600_000)).toEqual({
      ledger: 1,
      outbox: 1,
      outboxFailures: 0,
    });
    expect((await db.pool.query('SELECT message_id FROM processed_messages')).rows).toEqual([
      { message_id: 'recent' },
    ]);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM outbox')).rows[0].n).toBe(2);
  });
});
