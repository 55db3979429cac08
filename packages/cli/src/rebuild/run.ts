import { randomBytes } from 'node:crypto';
import { migrate, runtimeMigrationsDir, type Pool } from '@shoal/db';
import { withKafkaAdmin } from '../connections.js';
import { progressOf } from '../progress.js';
import { message } from '../terminal.js';
import { runRebuildChild } from './child.js';
import {
  declaredStops,
  liveGroups,
  type DeclaredStops,
  type ServicePackage,
} from './declaration.js';
import { diffReadModels, type Difference } from './diff.js';
import { prepareLiveIds } from './live-ids.js';
import type { RebuildPlan } from './output.js';
import { openLiveSnapshot, readTables, storedOffsets, type GroupStops } from './snapshot.js';

/**
 * `shoal rebuild`'s steps up to the diff (command.ts has the options, the output and the swap):
 * the live snapshot and its stop offsets, the shadow schema migrated and given the live ids, the
 * service in rebuild mode to exactly those offsets, the check that it stopped there, the diff.
 * A dry run returns the plan after the first step and changes nothing.
 */
export async function rebuildAndCompare(
  pool: Pool,
  options: {
    service: string;
    servicePackage: ServicePackage;
    live: string;
    shadow: string;
    group: string;
    databaseUrl: string;
    brokers: string[];
    dryRun: boolean;
    animate: boolean;
  },
): Promise<{ plan: RebuildPlan } | { stopAt: DeclaredStops; differences: Difference[] }> {
  const { service, live, shadow, group } = options;
  const { declaration, main, migrationsDir } = options.servicePackage;
  const snapshot = await openLiveSnapshot(pool, {
    schema: live,
    groups: liveGroups(declaration, group),
    databaseUrl: options.databaseUrl,
  });
  const stops = snapshot.stopAt;
  const stopAt = declaredStops(declaration, group, stops);
  const kafkaGroup = `${group}.rebuild-${randomBytes(4).toString('hex')}`;
  let started = false;
  try {
    const lowWatermarks = await withKafkaAdmin(options.brokers, async (admin) => {
      const low = new Map<string, number>();
      for (const topic of new Set(Object.values(stops).flatMap(Object.keys)))
        for (const p of await admin.fetchTopicOffsets(topic))
          low.set(`${topic}:${p.partition}`, Number(p.low));
      return low;
    });
    const records = Object.values(stops)
      .flatMap((topics) => Object.entries(topics))
      .reduce(
        (n, [topic, parts]) =>
          n +
          Object.entries(parts).reduce(
            (m, [p, stop]) => m + Math.max(0, stop - (lowWatermarks.get(`${topic}:${p}`) ?? 0)),
            0,
          ),
        0,
      );
    if (options.dryRun)
      return {
        plan: {
          service,
          live,
          shadow,
          group,
          stopAt,
          stops,
          records,
          tables: declaration.tables.map((t) => t.name),
        },
      };
    await pool.query(`DROP SCHEMA IF EXISTS "${shadow}" CASCADE`);
    await migrate({
      databaseUrl: options.databaseUrl,
      direction: 'up',
      dirs: [runtimeMigrationsDir, migrationsDir],
      schema: shadow,
    });
    await prepareLiveIds(pool, declaration, live, shadow);
    message(
      `rebuilding ${service} into schema ${shadow}, up to ${group}'s offsets in the snapshot`,
    );
    const progress = progressOf('rebuilt', records, options.animate);
    started = true;
    try {
      await runRebuildChild({
        main,
        service,
        shadow,
        group,
        kafkaGroup,
        stopAt,
        stops,
        lowWatermarks,
        pool,
        progress,
      });
    } finally {
      progress.stop();
    }
    await checkStoppedAt(pool, shadow, stops, lowWatermarks);
    const differences = diffReadModels(
      declaration,
      await snapshot.tables(declaration),
      await readTables(pool, shadow, declaration),
    );
    return { stopAt, differences };
  } finally {
    await snapshot.close();
    // the runtime's Kafka groups: the one, or one per group of the service's
    const kafkaGroups = declaration.groups?.map((name) => `${kafkaGroup}.${name}`) ?? [kafkaGroup];
    if (started)
      await withKafkaAdmin(options.brokers, (admin) => admin.deleteGroups(kafkaGroups)).catch(
        () => undefined,
      );
  }
}

/** The shadow's stored offsets must be exactly each group's stop offsets (a partition with nothing to apply has none). */
async function checkStoppedAt(
  pool: Pool,
  shadow: string,
  stops: GroupStops,
  lowWatermarks: Map<string, number>,
) {
  const rows = await storedOffsets(pool, shadow, Object.keys(stops));
  const stored = new Map(rows.map((r) => [`${r.group} ${r.topic}:${r.partition}`, r.offset]));
  const wrong = Object.entries(stops).flatMap(([group, stopAt]) =>
    Object.entries(stopAt).flatMap(([topic, parts]) =>
      Object.entries(parts)
        .filter(([p, stop]) => {
          const at = stored.get(`${group} ${topic}:${p}`);
          return at === undefined ? stop > (lowWatermarks.get(`${topic}:${p}`) ?? 0) : at !== stop;
        })
        .map(
          ([p, stop]) =>
            `${Object.keys(stops).length > 1 ? `${group} ` : ''}${topic}:${p} at ${stored.get(`${group} ${topic}:${p}`) ?? 'nothing'}, stop ${stop}`,
        ),
    ),
  );
  if (wrong.length)
    throw new Error(`the rebuild did not stop at the live offsets: ${wrong.join(', ')}`);
}
