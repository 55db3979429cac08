import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from './index.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<T extends Options> = {
  [K in keyof T]?: T[K] extends { type: 'string'; multiple: true }
    ? string[]
    : T[K] extends { type: 'string' }
      ? string
      : T[K] extends { multiple: true }
        ? boolean[]
        : boolean;
};

/** Parses argv; `--help` prints the usage and exits 0, a bad flag prints it and exits 2. */
export function parseCli<T extends Options>(
  usage: string,
  options: T,
  argv = process.argv.slice(2),
): { positionals: string[]; values: Values<T> } {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    });
    if ((parsed.values as { help?: boolean }).help) {
      process.stdout.write(usage);
      process.exit(0);
    }
    return { positionals: parsed.positionals, values: parsed.values as Values<T> };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}

/** Ends a CLI: config errors and failures print one clear message, never a stack trace. */
export function runCli(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(
        `${error instanceof ConfigError ? error.message : `error: ${(error as Error).message}`}\n`,
      );
      process.exit(1);
    },
  );
}

export function formatTable(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '(none)';
  const columns = Object.keys(rows[0]!);
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? '')));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
