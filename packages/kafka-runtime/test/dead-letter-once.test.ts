import { dlqTopic, occurrenceKey } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER, type RunningConsumer } from '../src/index.js';
import {
  codecFor,
  encodeAll,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  readAll,
  spawnCounter,
  startCounter,
  storedNextOffset,
  totalCount,
  unpublished,
  waitFor,
  type Raw,
} from './support.js';

/**
 * A dead letter is written to the outbox in the chunk's transaction and produced by the relay, so
 * a chunk that does not commit (its COMMIT refused, the process killed after the dead letters were
 * written) produces none, and the chunk that commits produces each once, attempt count 1.
 */

let ns: IsolatedTopics;
const dbs: IsolatedDatabase[] = [];
const running: RunningConsumer[] = [];
const children: RunningEntryPoint[] = [];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  const good = await encodeAll(
    codecFor(ns.topics),
    Array.from({ length: 6 }, (_, i) => occurrence(i, { seed: 'dlq-once' })),
  );
  const bad = (i: number): Raw => ({
    key: occurrenceKey(occurrence(100 + i, { seed: 'dlq-once' })),
    value: Buffer.from(`not an occurrence ${i}`),
  });
  await produceRaw(
    ns.topics.occurrences,
    [...good.slice(0, 3), bad(1), ...good.slice(3), bad(2)],
    0,
  );
});
afterAll(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all([...dbs.map((db) => db.drop()), ns.drop()]);
});

async function freshDatabase(): Promise<IsolatedDatabase> {
  const db = await isolatedDatabase(counterDatabase);
  dbs.push(db);
  await liveProjects(db.pool, [1, 2, 3]);
  return db;
}

/** Waits for all 8 messages to be settled and published, then returns this group's dead letters. */
async function deadLettersOnceSettled(db: IsolatedDatabase, group: string) {
  await waitFor(
    'every message settled and published',
    async () =>
      (await storedNextOffset(db.pool, group, ns.topics.occurrences)) === 8 &&
      (await unpublished(db.pool)) === 0,
    120_000,
  );
  expect(await totalCount(db.pool)).toBe(6);
  return (await readAll(dlqTopic(ns.topics.occurrences))).filter(
    (r) => r.headers[DLQ_HEADER.consumerGroup] === group,
  );
}

function expectEachOnceFirstAttempt(dlq: Awaited<ReturnType<typeof deadLettersOnceSettled>>) {
  expect(dlq.map((r) => r.headers[DLQ_HEADER.originalOffset]).sort()).toEqual(['3', '7']);
  expect(new Set(dlq.map((r) => r.headers[HEADER.messageId])).size).toBe(2);
  for (const record of dlq) expect(record.headers[DLQ_HEADER.attemptCount]).toBe('1');
}

it('the COMMIT is refused once: the dead letters are produced once, attempt count 1', async () => {
  const db = await freshDatabase();
  // PostgreSQL refuses the first COMMIT that moves an offset (serialization failure, at commit time)
  await db.pool.query(`
    CREATE SEQUENCE offset_commits;
    CREATE FUNCTION refuse_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval('offset_commits') = 1 THEN
        RAISE EXCEPTION 'commit refused once, for the test' USING ERRCODE = '40001';
      END IF;
      RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER refuse_first_commit AFTER UPDATE ON consumer_offsets
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_first_commit();`);
  running.push(await startCounter(ns, db.pool, { group: 'commit-refused', maxBatchSize: 100 }));
  const dlq = await deadLettersOnceSettled(db, 'commit-refused');
  const { rows } = await db.pool.query<{ n: number }>('SELECT last_value AS n FROM offset_commits');
  expect(rows[0]!.n).toBeGreaterThanOrEqual(2); // the refused COMMIT happened, and the retry's
  expectEachOnceFirstAttempt(dlq);
});

it('killed after the dead letters were written, before COMMIT: produced once after the restart', async () => {
  const db = await freshDatabase();
  const env = {
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    DATABASE_URL: db.url,
    SHOAL_CONSUMER_GROUP: 'killed-after-dlq',
  };
  const dying = spawnCounter({ ...env, SHOAL_CRASH_AT: 'consumer:after-dead-letter:1' });
  children.push(dying);
  const code = await Promise.race([
    dying.exited,
    new Promise((r) => setTimeout(() => r('still running'), 60_000)),
  ]);
  expect(code).toBeNull(); // SIGKILLed itself at the hook
  expect(await storedNextOffset(db.pool, 'killed-after-dlq', ns.topics.occurrences)).toBe(-1);

  const restarted = spawnCounter(env);
  children.push(restarted);
  expectEachOnceFirstAttempt(await deadLettersOnceSettled(db, 'killed-after-dlq'));
});
