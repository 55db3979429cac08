import { spawn } from 'node:child_process';
import type { Pool } from '@shoal/db';
import { redactSecrets } from '../connections.js';
import type { Progress } from '../progress.js';
import type { DeclaredStops } from './declaration.js';
import { storedOffsets, type GroupStops } from './snapshot.js';

/**
 * The service's own main as a child process in rebuild mode (kafka-runtime `rebuild.ts`): the
 * environment of this command (the service's connections and settings) plus the shadow schema, the
 * fresh Kafka group, the stop offsets and the live group's name. Resolves once it exited 0 (it
 * reached every stop offset); rejects with its last log lines otherwise. `progress` is fed from the
 * shadow's stored offsets every second. Killed if this process exits first.
 */
export async function runRebuildChild(options: {
  main: string;
  service: string;
  shadow: string;
  group: string;
  kafkaGroup: string;
  /** As SHOAL_REBUILD_STOP_AT takes them. */
  stopAt: DeclaredStops;
  stops: GroupStops;
  lowWatermarks: Map<string, number>;
  pool: Pool;
  progress: Progress;
}): Promise<void> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SHOAL_REBUILD_SCHEMA: options.shadow,
    SHOAL_REBUILD_KAFKA_GROUP: options.kafkaGroup,
    SHOAL_REBUILD_STOP_AT: JSON.stringify(options.stopAt),
    SHOAL_CONSUMER_GROUP: options.group,
  };
  delete env.SHOAL_OPS_PORT;
  const child = spawn(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), '--conditions=shoal-source', options.main],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const killChild = () => child.kill('SIGTERM');
  process.once('exit', killChild);
  const tail: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const poll = setInterval(() => {
    void appliedSoFar(options).then(
      (done) => options.progress.update(done),
      () => undefined, // the shadow is still being migrated
    );
  }, 1000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (c) => resolve(c));
    });
    if (code !== 0)
      throw new Error(
        `${options.service} in rebuild mode exited ${code}; its last lines:\n${redactSecrets(tail.slice(-8).join('\n'))}`,
      );
    options.progress.update(await appliedSoFar(options));
  } finally {
    clearInterval(poll);
    process.removeListener('exit', killChild);
  }
}

/** Records applied in the shadow (its stored offsets past each partition's log start). */
async function appliedSoFar(options: {
  pool: Pool;
  shadow: string;
  stops: GroupStops;
  lowWatermarks: Map<string, number>;
}): Promise<number> {
  const rows = await storedOffsets(options.pool, options.shadow, Object.keys(options.stops));
  return rows.reduce((n, r) => {
    const stop = options.stops[r.group]?.[r.topic]?.[String(r.partition)] ?? 0;
    const low = options.lowWatermarks.get(`${r.topic}:${r.partition}`) ?? 0;
    return n + Math.max(0, Math.min(r.offset, stop) - low);
  }, 0);
}
