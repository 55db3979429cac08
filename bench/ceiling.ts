/**
 * The in-run ceiling the grouping and runtime benchmarks print beside their figures: a plain kafkajs
 * consumer (3 partitions at a time) that decodes and validates every occurrence and writes one
 * batched upsert of per-fingerprint counts per batch — the work any consumer of the topic must do,
 * without the runtime (ledger, outbox, offsets in the database). Occurrences/s from the first batch
 * until `total` are consumed. `countOccurrences` and `upsertCounts` are that domain work, exported so
 * bench/runtime can run the very same work as a runtime handler (its like-for-like row).
 */
import type { Codec, Occurrence } from '@shoal/contracts';
import { isolatedDatabase, kafka, uniqueName } from '@shoal/testing';

/** The table the ceiling's upsert writes (bench/runtime makes it in the runtime's database too). */
export const COUNTS_TABLE =
  'CREATE TABLE counts (project_id int, hash text, n bigint, PRIMARY KEY (project_id, hash))';

/** One batch's occurrences counted per (project, first fingerprint). */
export function countOccurrences(decoded: Occurrence[]): [number, string, number][] {
  const counts = new Map<string, [number, string, number]>();
  for (const o of decoded) {
    const key = `${o.project_id}:${o.fingerprint[0]}`;
    const c = counts.get(key) ?? [o.project_id, o.fingerprint[0]!, 0];
    c[2]++;
    counts.set(key, c);
  }
  return [...counts.values()];
}

/** The one batched upsert of a batch's counts. */
export async function upsertCounts(
  client: { query(text: string, values: unknown[]): Promise<unknown> },
  rows: [number, string, number][],
): Promise<void> {
  await client.query(
    `INSERT INTO counts SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[])
     ON CONFLICT (project_id, hash) DO UPDATE SET n = counts.n + EXCLUDED.n`,
    [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
  );
}

export async function ceiling(topic: string, codec: Codec, total: number): Promise<number> {
  const db = await isolatedDatabase({ migrate: false });
  await db.pool.query(COUNTS_TABLE);
  const consumer = kafka().consumer({ groupId: uniqueName('ceiling-'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let started = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      partitionsConsumedConcurrently: 3,
      eachBatch: async ({ batch }) => {
        if (!started) started = Date.now();
        const decoded = await Promise.all(
          batch.messages.map((m) => codec.decode('occurrences', m.value)),
        );
        await upsertCounts(db.pool, countOccurrences(decoded));
        seen += batch.messages.length;
        if (seen >= total) resolve();
      },
    });
  });
  const rate = total / ((Date.now() - started) / 1000);
  await consumer.disconnect();
  await db.drop();
  return rate;
}
