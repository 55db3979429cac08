import type { Checked, LegacyReport, Located, Problem } from './reports.js';

/**
 * The import's plan over every checked record: malformed ones are reported and left out; a legacy
 * id given twice keeps its first record; each report's canonical (the end of its duplicate_of_id
 * chain within the import) gives the fingerprint, so duplicates join their canonical's group
 * (and carry its title: an occurrence names the title of its issue). A
 * dangling or circular duplicate_of_id is a warning: the report is imported as its own.
 */

export interface PlannedReport extends Located {
  report: LegacyReport;
  /** The report whose fingerprint and title it takes: itself, or its canonical. */
  canonical: LegacyReport;
}

export interface ImportPlan {
  planned: PlannedReport[];
  /** Records left out, each reason by file, line and field. */
  problems: Problem[];
  /** Records imported with something set aside. */
  warnings: Problem[];
}

export function planImport(checked: Checked[]): ImportPlan {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const byId = new Map<string, Located & { report: LegacyReport }>();
  for (const c of checked) {
    if ('problems' in c) {
      problems.push(...c.problems);
      continue;
    }
    const first = byId.get(c.report.id);
    if (first !== undefined) {
      problems.push({
        file: c.file,
        line: c.line,
        field: 'id',
        problem: `id ${c.report.id} was given before, at ${first.file}:${first.line}; this record is left out`,
      });
      continue;
    }
    byId.set(c.report.id, c);
  }
  const canonicalOf = (start: Located & { report: LegacyReport }): LegacyReport => {
    const seen = new Set<string>([start.report.id]);
    let current = start.report;
    for (;;) {
      const target = current.duplicate_of_id;
      if (target === undefined || target === null) return current;
      const next = byId.get(target);
      if (next === undefined || seen.has(target)) {
        warnings.push({
          file: start.file,
          line: start.line,
          field: 'duplicate_of_id',
          problem:
            next === undefined
              ? `duplicate of ${target}, which this import does not hold: imported as its own issue`
              : `duplicate chain through ${target} goes round in a circle: imported as its own issue`,
        });
        return start.report;
      }
      seen.add(target);
      current = next.report;
    }
  };
  const planned = [...byId.values()].map((c) => ({ ...c, canonical: canonicalOf(c) }));
  return { planned, problems, warnings };
}
