import { colorsFor, jsonLines, table } from '../terminal.js';
import type { Difference } from './diff.js';
import type { DeclaredStops } from './declaration.js';
import type { GroupStops } from './snapshot.js';

/** What `shoal rebuild` prints on stdout: the differences as a table, and a dry run's plan. */

export function differencesTable(differences: Difference[], colorOption: boolean): string {
  const colors = colorsFor(process.stdout, colorOption);
  const show = (values?: Record<string, string | null>) =>
    values
      ? Object.entries(values)
          .map(([k, v]) => `${k}=${v ?? 'null'}`)
          .join('\n')
      : '';
  return table(
    colors,
    ['table', 'key', 'difference', 'live', 'rebuilt'],
    differences.map((d) => [
      d.table,
      show(d.key),
      colors.red(d.difference),
      show(d.live),
      show(d.rebuilt),
    ]),
  );
}

export interface RebuildPlan {
  service: string;
  live: string;
  shadow: string;
  group: string;
  /** As the summary shows them (declaredStops). */
  stopAt: DeclaredStops;
  /** Per live group, for the text. */
  stops: GroupStops;
  records: number;
  tables: string[];
}

export function printPlan(json: boolean, plan: RebuildPlan) {
  const { stops, ...shown } = plan;
  if (json) {
    process.stdout.write(jsonLines([{ type: 'plan', dryRun: true, ...shown }]));
    return;
  }
  const offsets = Object.entries(stops)
    .map(
      ([group, topics]) =>
        `${group}'s offsets ${Object.entries(topics)
          .flatMap(([topic, parts]) => Object.entries(parts).map(([p, o]) => `${topic}:${p}@${o}`))
          .join(' ')}`,
    )
    .join('; ');
  process.stdout.write(
    `would rebuild ${plan.service} (schema ${plan.live}) into ${plan.shadow}: ${plan.records} records up to ${offsets}; would compare ${plan.tables.join(', ')}\n`,
  );
}
