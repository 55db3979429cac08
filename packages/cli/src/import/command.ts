import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { connectionEnv, loadConfig, z } from '@shoal/config';
import { ContractError, createProducer } from '@shoal/producer';
import { connectionsHelp, withDatabase } from '../connections.js';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import { nonEmpty, projectId, wholeNumber } from '../options.js';
import { progressOf } from '../progress.js';
import { publishCommands } from '../publish.js';
import { colorsFor, defaultActor, jsonLines, message, table, terminalAllows } from '../terminal.js';
import {
  doneSteps,
  ensureImportLedger,
  findRun,
  finishRun,
  markDone,
  startRun,
  type ImportRun,
} from './ledger.js';
import { groupsOf, issueCommandsOf, openedIssues } from './issues.js';
import { legacyStepId, occurrenceOf } from './occurrence.js';
import { planImport, type ImportPlan } from './plan.js';
import { recordsOf, type Checked, type Problem } from './reports.js';

/**
 * `shoal import <dir|file|->`: legacy JSON bug reports into Shoal. Every record is checked first;
 * the malformed ones are reported by file, line and field and left out, the rest become
 * occurrences (fingerprint `legacy:<id>`, a duplicate takes its canonical's) and, once their issues
 * are open, lifecycle commands that give each issue its report's history. Progress is
 * checkpointed per acknowledged batch in `shoal_cli`, so `--resume <run>` picks an interrupted
 * run up; ids derive from legacy ids, so importing the same reports again changes nothing.
 */

const BATCH = 500;
const readable = /\.(json|jsonl|ndjson)$/i;

/** The files of `source` in a stable order: a directory's JSON files (recursively), a file, or stdin. */
function filesOf(source: string): { file: string; content: () => string }[] {
  if (source === '-') return [{ file: '(stdin)', content: () => readFileSync(0, 'utf8') }];
  let stat;
  try {
    stat = statSync(source);
  } catch {
    throw new UsageError(`${source}: no such file or directory`);
  }
  if (!stat.isDirectory()) return [{ file: source, content: () => readFileSync(source, 'utf8') }];
  return readdirSync(source, { recursive: true, encoding: 'utf8' })
    .filter((name) => readable.test(name) && statSync(path.join(source, name)).isFile())
    .sort()
    .map((name) => {
      const file = path.join(source, name);
      return { file, content: () => readFileSync(file, 'utf8') };
    });
}

const runId = (value: string): string => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value))
    throw new InvalidArgumentError('expected a run id (a UUID, as a run prints it).');
  return value.toLowerCase();
};

const importHelp = `
Reads legacy bug reports: every *.json, *.jsonl and *.ndjson file below a directory, one file, or
- for stdin. A file holds one object, an array of objects, or JSON Lines. Fields: id, title
(required), description, severity, category, status, source, reporter, assignee, trace_id,
request_id, release_sha, duplicate_of_id, created_at (required), updated_at, resolved_at,
closed_at, sla_due_at, resolution_notes, commit_shas, events [{at, kind, actor, note}]; other
fields are kept with the occurrence (evidence_data.legacy).

Each report becomes an occurrence on shoal.occurrences.v1 in --project: fingerprint
legacy:<id> (a report whose duplicate_of_id names another report of the import takes that one's
fingerprint, so both are one issue), title, severity as level, created_at as detection time. Ids
derive from the legacy id (a record without one gets an id from its content): importing the same
reports again publishes the same messages, which apply once.

Once grouping has grouped a report and lifecycle has opened its issue (issue id = group id; both
read from DATABASE_URL, up to --wait seconds), the issue gets the report's history as lifecycle
commands by --actor, in order: its fields (severity, category, assignee, SLA, trace and request
id, release SHA), its description and events as notes (with their own times), then its status
(resolved in its commits or now; closed as fixed, wont_fix or duplicate; in_progress and
awaiting_verification as triaged, with a note: a claim is an agent's lease). A duplicate adds
only its notes, to its canonical's issue.

The report of refused records (file, line, field, problem) goes to stdout, a table or --json;
--dry-run checks and reports without publishing. A run is recorded in the schema shoal_cli of
DATABASE_URL with a checkpoint per batch Kafka acknowledged: --resume <run> continues it (give
the same - again for stdin).

Examples:
  npx shoal import ./legacy-reports --project 7 --dry-run
  npx shoal import reports.jsonl --project 7
  cat export.json | npx shoal import - --project 7 --json
  npx shoal import --resume 3f0c2d7e-4b61-4a52-8c1f-0b8f3b5e6a52

${exitCodesHelp}

${connectionsHelp}
  SCHEMA_REGISTRY_URL     the registry occurrences are framed with
  SHOAL_TOPIC_NAMESPACE   prefix of the topic name (empty)`;

/** Every record of every file of `source`, checked. */
export function checkSource(source: string): Checked[] {
  return filesOf(source).flatMap(({ file, content }) => recordsOf(file, content()));
}

function printReport(plan: ImportPlan, options: { json?: boolean; color: boolean }): void {
  const rows = [
    ...plan.problems.map((p) => ({ ...p, outcome: 'refused' as const })),
    ...plan.warnings.map((p) => ({ ...p, outcome: 'warning' as const })),
  ];
  if (options.json) {
    process.stdout.write(jsonLines(rows));
    return;
  }
  if (rows.length === 0) return;
  const colors = colorsFor(process.stdout, options.color);
  process.stdout.write(
    `${table(
      colors,
      ['file', 'line', 'field', 'outcome', 'problem'],
      rows.map((r: Problem & { outcome: string }) => [
        r.file,
        r.line,
        r.field,
        r.outcome,
        r.problem,
      ]),
    )}\n`,
  );
}

async function publishOccurrences(
  plan: ImportPlan,
  run: ImportRun,
  animate: boolean,
): Promise<{ published: number; refused: Problem[] }> {
  const config = loadConfig({
    DATABASE_URL: connectionEnv.DATABASE_URL,
    KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS,
    SCHEMA_REGISTRY_URL: connectionEnv.SCHEMA_REGISTRY_URL,
    SHOAL_TOPIC_NAMESPACE: z.string().default(''),
  });
  return withDatabase(config.DATABASE_URL, async (pool) => {
    const done = await doneSteps(pool, run.id);
    const left = plan.planned.filter((p) => !done.has(legacyStepId(p.report.id, 'occurrence')));
    const batches = Array.from({ length: Math.ceil(left.length / BATCH) }, (_, i) =>
      left.slice(i * BATCH, (i + 1) * BATCH),
    );
    const producer = createProducer({
      brokers: config.KAFKA_BROKERS,
      registryUrl: config.SCHEMA_REGISTRY_URL,
      namespace: config.SHOAL_TOPIC_NAMESPACE,
      clientId: 'shoal-cli-import',
    });
    const progress = progressOf('importing', plan.planned.length, animate);
    const refused: Problem[] = [];
    let published = plan.planned.length - left.length;
    progress.update(published);
    try {
      for (const batch of batches) {
        const outcomes = await Promise.allSettled(
          batch.map((p) => producer.publishOccurrence(occurrenceOf(p, run.projectId))),
        );
        const acked: string[] = [];
        outcomes.forEach((outcome, k) => {
          const p = batch[k]!;
          if (outcome.status === 'fulfilled') acked.push(legacyStepId(p.report.id, 'occurrence'));
          else if (outcome.reason instanceof ContractError)
            refused.push({
              file: p.file,
              line: p.line,
              field: '(occurrence)',
              problem: outcome.reason.message,
            });
          else throw outcome.reason;
        });
        await markDone(pool, run.id, acked);
        published += acked.length;
        progress.update(published);
      }
    } finally {
      progress.stop();
      await producer.close();
    }
    return { published, refused };
  });
}

/** Waits for grouping to group every report, then gives each issue its report's history. */
async function publishIssueCommands(
  plan: ImportPlan,
  run: ImportRun,
  options: { waitSeconds: number; animate: boolean },
): Promise<{ issues: number; commands: number; ungrouped: number }> {
  const databaseUrl = loadConfig({ DATABASE_URL: connectionEnv.DATABASE_URL }).DATABASE_URL;
  return withDatabase(databaseUrl, async (pool) => {
    const done = await doneSteps(pool, run.id);
    const deadline = Date.now() + options.waitSeconds * 1000;
    const waiting = progressOf('waiting for the issues', plan.planned.length, options.animate);
    // report id -> issue id, once grouping grouped it and lifecycle opened the issue
    const ready = async () => {
      const groups = await groupsOf(pool, run.projectId, plan.planned);
      const opened = await openedIssues(pool, [...new Set(groups.values())]);
      return new Map([...groups].filter(([, issue]) => opened.has(issue)));
    };
    let groups = await ready();
    while (groups.size < plan.planned.length && Date.now() < deadline) {
      waiting.update(groups.size);
      await new Promise((resolve) => setTimeout(resolve, 500));
      groups = await ready();
    }
    waiting.update(groups.size);
    waiting.stop();
    const issuedAt = new Date().toISOString();
    const perReport = plan.planned.flatMap((p) => {
      const issueId = groups.get(p.report.id);
      if (issueId === undefined) return [];
      const commands = issueCommandsOf(p, issueId, run.actor, issuedAt);
      return commands.every((c) => done.has(c.commandId)) ? [] : [commands];
    });
    const progress = progressOf('issue history', perReport.length, options.animate);
    let commands = 0;
    try {
      // a report's commands stay in one send: they apply in their order
      for (let i = 0; i < perReport.length; i += BATCH / 5) {
        const batch = perReport.slice(i, i + BATCH / 5).flat();
        if (batch.length > 0) await publishCommands('lifecycleCommands', batch);
        await markDone(
          pool,
          run.id,
          batch.map((c) => c.commandId),
        );
        commands += batch.length;
        progress.update(Math.min(i + BATCH / 5, perReport.length));
      }
    } finally {
      progress.stop();
    }
    return {
      issues: new Set(groups.values()).size,
      commands,
      ungrouped: plan.planned.length - groups.size,
    };
  });
}

export function addImportCommand(program: Command<[], { color: boolean }>): void {
  program
    .command('import')
    .description("import legacy JSON bug reports as occurrences and their issues' history")
    .argument('[source]', 'a directory, a file, or - for stdin')
    .option('--project <id>', 'the project the reports belong to', projectId)
    .option('--resume <run>', 'continue an interrupted run (its source and project)', runId)
    .option('--actor <who>', 'who, kept with the run', nonEmpty, defaultActor())
    .option(
      '--wait <seconds>',
      "how long to wait for the reports' issues to be open",
      wholeNumber,
      300,
    )
    .option('--dry-run', 'check and report, publish nothing')
    .option('--json', 'the report as JSON Lines: one object per refused record or warning')
    .addHelpText('after', importHelp)
    .action(async (sourceArg, options, command) => {
      const color = command.optsWithGlobals().color;
      const databaseUrl = loadConfig({ DATABASE_URL: connectionEnv.DATABASE_URL }).DATABASE_URL;
      let run: ImportRun;
      if (options.resume !== undefined) {
        const earlier = await withDatabase(databaseUrl, async (pool) => {
          await ensureImportLedger(pool);
          return findRun(pool, options.resume!);
        });
        if (earlier === undefined)
          throw new UsageError(`--resume: no import run ${options.resume}`);
        if (sourceArg !== undefined && sourceArg !== earlier.source)
          throw new UsageError(
            `--resume: run ${earlier.id} read ${earlier.source}, not ${sourceArg}`,
          );
        if (options.project !== undefined && options.project !== earlier.projectId)
          throw new UsageError(
            `--resume: run ${earlier.id} imports into project ${earlier.projectId}`,
          );
        run = earlier;
      } else {
        if (sourceArg === undefined) throw new UsageError('give a directory, a file or -');
        if (options.project === undefined) throw new UsageError('--project is required');
        run = {
          id: randomUUID(),
          source: sourceArg,
          projectId: options.project,
          actor: options.actor,
          finishedAt: null,
        };
      }
      const plan = planImport(checkSource(run.source));
      printReport(plan, { json: options.json, color });
      const summary = `${plan.planned.length} report(s), ${plan.problems.length} refused, ${plan.warnings.length} warning(s)`;
      if (options.dryRun) {
        message(`dry run: ${summary}; nothing published`);
      } else {
        if (options.resume === undefined)
          await withDatabase(databaseUrl, async (pool) => {
            await ensureImportLedger(pool);
            await startRun(pool, run);
          });
        const { published, refused } = await publishOccurrences(
          plan,
          run,
          terminalAllows(process.stderr, color),
        );
        if (refused.length > 0)
          printReport(
            { planned: [], problems: refused, warnings: [] },
            { json: options.json, color },
          );
        message(
          `import run ${run.id}: ${published} of ${plan.planned.length} report(s) published, ${plan.problems.length + refused.length} refused, ${plan.warnings.length} warning(s)`,
        );
        const refusedAt = new Set(refused.map((p) => `${p.file}:${p.line}`));
        const issues = await publishIssueCommands(
          { ...plan, planned: plan.planned.filter((p) => !refusedAt.has(`${p.file}:${p.line}`)) },
          run,
          { waitSeconds: options.wait, animate: terminalAllows(process.stderr, color) },
        );
        message(`${issues.commands} lifecycle command(s) published to ${issues.issues} issue(s)`);
        if (issues.ungrouped > 0) {
          message(
            `${issues.ungrouped} report(s) without an open issue after ${options.wait} s: are grouping and lifecycle running? Continue with: shoal import --resume ${run.id}`,
          );
          process.exitCode = exitCodes.failed;
          return;
        }
        await withDatabase(databaseUrl, (pool) =>
          finishRun(pool, run.id, {
            reports: published,
            refused: plan.problems.length + refused.length,
          }),
        );
        if (refused.length > 0) process.exitCode = exitCodes.refused;
      }
      if (plan.problems.length > 0) process.exitCode = exitCodes.refused;
    });
}
