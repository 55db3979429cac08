import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { NotSetUpError } from '../exit.js';
import type { GroupStops, StopOffsets } from './snapshot.js';

/**
 * What a service declares for `shoal rebuild`: a `rebuild.json` at its package's root, exported as
 * `@shoal/<service>/rebuild.json`, beside its `./main` export (the entry the rebuild starts in
 * rebuild mode). Data, not code: the CLI reads it without importing a service (the lint rule), and a
 * new service (lifecycle) only adds the file and the export.
 *
 * Per table of the service's own (the runtime's are not compared):
 * - `key`: the natural key, the columns a row is matched by in the live and the rebuilt schema
 *   (after `references` are translated);
 * - `arrivalOrder`: columns whose values depend on the order messages arrived in (a group's id and
 *   short id), compared as a mapping (each live value to one rebuilt value, one to one, within the
 *   rows that share the `per` columns: a short number is unique per project); the first one
 *   identifies the row (what `references` point at), and `--swap` carries the live values over;
 * - `liveIds`: for a table with `arrivalOrder`, the columns a new row is known by when it is inserted
 *   (`{"match": ["project_id", "primary_hash"]}`): the rebuild then gives each row it inserts the
 *   live arrival-order values of the live row so known (of several, the earliest not yet taken), so
 *   a message naming a live id (a group's deletion, a status change naming `shoal.group_id`, a merge
 *   of incidents) finds its row in the rebuild too; a row the live schema lacks keeps its own. Only
 *   for a service that reads a new row's ids back from its INSERT (RETURNING): one that takes ids
 *   from the sequence first and uses them (dedup's incidents) would point at ids the trigger replaced;
 * - `references`: column → table whose first `arrivalOrder` column it holds; compared translated;
 * - `wallClock`: columns set from the clock at apply time (never compared, the rebuilt value kept);
 * - `carried`: columns whose values depend on timing rather than on the log (set by a scheduled
 *   job on its own timer, or by whichever message happened to arrive first): never compared;
 *   `--swap` carries the live values over, so the service goes on from where the live one stood.
 *
 * And for the service: `groups`, the names of its consumer groups when it runs more than one in a
 * process (lifecycle's `["decide", "intake"]`, kafka-runtime groups.ts): the rebuild reads each
 * live group's offsets (`<group>.<name>`) in the snapshot and rebuilds every group up to its own.
 */
const column = z.string().regex(/^[a-z_][a-z0-9_]*$/, 'expected a lower-case column name');

const tableShape = z.object({
  name: z.string().regex(/^[a-z_][a-z0-9_]*$/, 'expected a lower-case table name'),
  key: z.array(column).min(1),
  arrivalOrder: z
    .array(z.union([column, z.object({ column, per: z.array(column).min(1) })]))
    .min(1)
    .optional(),
  liveIds: z.object({ match: z.array(column).min(1) }).optional(),
  references: z.record(column, z.string()).optional(),
  wallClock: z.array(column).optional(),
  carried: z.array(column).optional(),
});

const declarationShape = z
  .object({
    $comment: z.string().optional(),
    service: z.string().min(1),
    groups: z
      .array(
        z.string().regex(/^[a-z][a-z0-9-]*$/, 'expected a group name: lower case, digits and -'),
      )
      .min(2)
      .refine((names) => new Set(names).size === names.length, 'a group is named twice')
      .optional(),
    tables: z.array(tableShape).min(1),
  })
  .superRefine((d, ctx) => {
    const withIds = new Set(d.tables.filter((t) => t.arrivalOrder).map((t) => t.name));
    d.tables.forEach((t, i) => {
      Object.entries(t.references ?? {}).forEach(([col, target]) => {
        if (!withIds.has(target))
          ctx.addIssue({
            code: 'custom',
            path: ['tables', i, 'references', col],
            message: `names ${target}, which declares no arrivalOrder`,
          });
      });
      // rows are matched by their key before the table's own ids are paired
      if (t.key.some((c) => t.references?.[c] === t.name))
        ctx.addIssue({
          code: 'custom',
          path: ['tables', i, 'key'],
          message: 'a key cannot hold a reference to its own table',
        });
      if (t.liveIds && !t.arrivalOrder)
        ctx.addIssue({
          code: 'custom',
          path: ['tables', i, 'liveIds'],
          message: 'liveIds needs arrivalOrder columns to take',
        });
      const first = t.arrivalOrder?.[0];
      if (first !== undefined && typeof first !== 'string')
        ctx.addIssue({
          code: 'custom',
          path: ['tables', i, 'arrivalOrder', 0],
          message: 'the first arrival-order column identifies the row: a plain column name',
        });
    });
  });

export type RebuildTable = z.infer<typeof tableShape>;
export type ArrivalColumn = { column: string; per: string[] };

/** A table's arrival-order columns, each with the columns its values are unique within. */
export const arrivalColumns = (table: RebuildTable): ArrivalColumn[] =>
  (table.arrivalOrder ?? []).map((a) => (typeof a === 'string' ? { column: a, per: [] } : a));
export type RebuildDeclaration = z.infer<typeof declarationShape>;

/** A declaration checked (`file` names it in the error, every problem with its path). */
export function parseDeclaration(file: string, json: unknown): RebuildDeclaration {
  const parsed = declarationShape.safeParse(json);
  if (!parsed.success)
    throw new Error(
      `${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}

/**
 * The live consumer groups a rebuild stops at: `group` itself, or each of the service's groups as
 * the runtime names them (`<group>.<name>`).
 */
export const liveGroups = (declaration: RebuildDeclaration, group: string): string[] =>
  declaration.groups ? declaration.groups.map((name) => `${group}.${name}`) : [group];

/**
 * The stop offsets as the rebuild mode takes them (SHOAL_REBUILD_STOP_AT), the summary shows them
 * and a swap records them: the one group's, or per group of a service of several.
 */
export type DeclaredStops = StopOffsets | GroupStops;

export const declaredStops = (
  declaration: RebuildDeclaration,
  group: string,
  stops: GroupStops,
): DeclaredStops => (declaration.groups ? stops : (stops[group] ?? {}));

/** `declaredStops` per live group again. */
export const groupStops = (
  declaration: RebuildDeclaration,
  group: string,
  stopAt: DeclaredStops,
): GroupStops => (declaration.groups ? (stopAt as GroupStops) : { [group]: stopAt as StopOffsets });

/** A service's package: where its declaration and its main are. */
export interface ServicePackage {
  declaration: RebuildDeclaration;
  /** The file to start in rebuild mode (`@shoal/<service>/main` resolved, the TypeScript source). */
  main: string;
  /** The service's `migrations/`, beside its rebuild.json. */
  migrationsDir: string;
}

export async function loadServicePackage(service: string): Promise<ServicePackage> {
  let declarationFile: string;
  let main: string;
  try {
    declarationFile = fileURLToPath(import.meta.resolve(`@shoal/${service}/rebuild.json`));
    main = fileURLToPath(import.meta.resolve(`@shoal/${service}/main`));
  } catch {
    throw new NotSetUpError(
      `service "${service}" declares no rebuild: its package @shoal/${service} needs the exports ./rebuild.json and ./main`,
    );
  }
  return {
    declaration: parseDeclaration(
      declarationFile,
      JSON.parse(await readFile(declarationFile, 'utf8')) as unknown,
    ),
    main,
    migrationsDir: path.join(path.dirname(declarationFile), 'migrations'),
  };
}
