/**
 * bench/ledger: the processed-id ledger stays bounded at full speed. Writers claim fresh ids 1,000
 * per statement through the runtime's own `claimMessageIds` (one transaction per claim, as a chunk
 * does), while the runtime's pruner (`startPruning`) runs with a short re-send window. Every few
 * seconds it prints the table's rows and `pg_total_relation_size` beside a ceiling: what the window
 * holds at the rate measured, plus what arrives between two pruning runs, times a factor.
 *
 *   npm run bench:ledger -- [--rows 2000000] [--window-seconds 5] [--writers 4] [--prune-every-seconds 1]
 *
 * The window is short so that a run of 2M rows (about half a minute on 2 cores) spans several of
 * them: the table must reach its plateau and stay there, in rows and in bytes.
 */
import { formatTable, parseCli } from '@shoal/config/cli';
import { withTransaction } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import { isolatedDatabase } from '@shoal/testing';
import os from 'node:os';
import { startPruning } from '../packages/kafka-runtime/src/retention.js';
import { claimMessageIds } from '../packages/kafka-runtime/src/store.js';

const usage = `Usage: npm run bench:ledger -- [--rows N] [--window-seconds W] [--writers C] [--prune-every-seconds P]

Writes N ledger rows (default 2000000) as fast as C writers (default 4) can claim them, 1,000 ids per
statement, while the pruner runs every P seconds (default 1) with a re-send window of W seconds
(default 5). Prints rows and size every few seconds beside the ceiling; exits 1 if the table
outgrew it. Needs the local stack's PostgreSQL (npm run stack -- up).
`;

const { values } = parseCli(usage, {
  rows: { type: 'string' },
  'window-seconds': { type: 'string' },
  writers: { type: 'string' },
  'prune-every-seconds': { type: 'string' },
});
const total = Number(values.rows ?? 2_000_000);
const windowMs = Number(values['window-seconds'] ?? 5) * 1000;
const writers = Number(values.writers ?? 4);
const pruneEveryMs = Number(values['prune-every-seconds'] ?? 1) * 1000;
const CLAIM = 1000;
const SAMPLE_MS = 3000;
/**
 * Slack over the rows the window and one pruning interval hold: a run (deletes, then vacuum) takes
 * seconds on a loaded machine, and the window's rows keep arriving meanwhile.
 */
const FACTOR = 2;

const db = await isolatedDatabase();
const group = 'bench';
const pruning = startPruning({
  pool: db.pool,
  group,
  logger: createLogger('bench-ledger', 'warn'),
  resendWindowMs: windowMs,
  everyMs: pruneEveryMs,
});

let written = 0;
let next = 0;
const started = Date.now();
async function writer(): Promise<void> {
  for (;;) {
    const from = next;
    if (from >= total) return;
    next += CLAIM;
    const ids = Array.from({ length: Math.min(CLAIM, total - from) }, (_, i) => `m-${from + i}`);
    await withTransaction(db.pool, (tx) => claimMessageIds(tx, group, ids));
    written += ids.length;
  }
}

/** Rows written by each instant (every 250 ms): the ceiling is what the last window + interval took. */
const progress: { at: number; written: number }[] = [{ at: started, written: 0 }];
const tracker = setInterval(() => progress.push({ at: Date.now(), written }), 250);
const heldSpanMs = windowMs + pruneEveryMs;

interface Sample {
  seconds: number;
  written: number;
  rows: number;
  bytes: number;
  ceilingRows: number;
}
const samples: Sample[] = [];
async function sample(): Promise<void> {
  const { rows } = await db.pool.query<{ rows: number; bytes: string }>(
    `SELECT (SELECT count(*)::int FROM processed_messages) AS rows,
            pg_total_relation_size('processed_messages') AS bytes`,
  );
  const now = Date.now();
  const since = progress.find((p) => p.at >= now - heldSpanMs) ?? progress[0]!;
  const s: Sample = {
    seconds: Math.round((now - started) / 1000),
    written,
    rows: rows[0]!.rows,
    bytes: Number(rows[0]!.bytes),
    ceilingRows: Math.round((written - since.written) * FACTOR),
  };
  samples.push(s);
  process.stderr.write(
    `${s.seconds}s written ${s.written} rows ${s.rows} ceiling ${s.ceilingRows} size ${(s.bytes / 2 ** 20).toFixed(0)} MiB\n`,
  );
}

const sampler = setInterval(() => void sample(), SAMPLE_MS);
await Promise.all(Array.from({ length: writers }, writer));
clearInterval(sampler);
clearInterval(tracker);
const seconds = (Date.now() - started) / 1000;
await pruning.stop();

// bytes per row of the table before anything was old enough to prune (no dead rows): the size's ceiling
const isFull = (s: Sample) => s.seconds * 1000 >= heldSpanMs;
const packed = samples.find((s) => s.seconds * 1000 < windowMs) ?? samples[0]!;
const bytesPerRow = packed.bytes / Math.max(1, packed.rows);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const table = samples.map((s) => {
  const ceilingBytes = s.ceilingRows * bytesPerRow * FACTOR;
  return {
    sample: s,
    bounded: !isFull(s) || (s.rows <= s.ceilingRows && s.bytes <= ceilingBytes),
    row: {
      't (s)': s.seconds,
      written: s.written,
      rows: s.rows,
      'ceiling rows': s.ceilingRows,
      'size MiB': mib(s.bytes),
      'ceiling MiB': mib(ceilingBytes),
      bounded: isFull(s) ? undefined : '(filling)',
    },
  };
});
for (const t of table) if (isFull(t.sample)) t.row.bounded = t.bounded ? 'yes' : 'NO';
process.stdout.write(
  `\nledger: ${total} rows written in ${seconds.toFixed(0)} s (${Math.round(total / seconds)}/s), ${writers} writers × ${CLAIM} ids per claim, window ${windowMs / 1000} s, pruning every ${pruneEveryMs / 1000} s\n` +
    `machine: ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB\n` +
    `ceiling rows = rows written in the last window + pruning interval × ${FACTOR}; ceiling MiB = that × ${Math.round(bytesPerRow)} B/row (before pruning began) × ${FACTOR}\n\n` +
    formatTable(table.map((t) => t.row)) +
    '\n',
);
await db.drop();
process.exit(table.every((t) => t.bounded) ? 0 : 1);
