import type { Command } from '@commander-js/extra-typings';

// Not in main.ts: tsx's lexer of dynamic imports fails on that file's `#!... --import tsx` line.

type Program = Command<[], { color: boolean }>;

/**
 * Each noun's module, loaded only when that noun runs: each pulls in its own dependencies (Kafka,
 * PostgreSQL, the registry, the rules), and loading all of them cost ~2 s of CPU on every run. In
 * the order top-level help lists them.
 */
export const nouns: Record<string, () => Promise<(program: Program) => void>> = {
  offsets: async () => (await import('./offsets/command.js')).addOffsetsCommand,
  dlq: async () => (await import('./dlq/command.js')).addDlqCommand,
  regression: async () => (await import('./regression/command.js')).addRegressionCommand,
  orphans: async () => (await import('./orphans/command.js')).addOrphansCommand,
  dedup: async () => (await import('./dedup/command.js')).addDedupCommand,
  status: async () => (await import('./status/command.js')).addStatusCommand,
  entities: async () => (await import('./entities/command.js')).addEntitiesCommand,
  import: async () => (await import('./import/command.js')).addImportCommand,
  rebuild: async () => (await import('./rebuild/command.js')).addRebuildCommand,
};

/**
 * The noun `args` (the bin's arguments) run, or undefined when they need every noun: top-level
 * help (`--help` before any noun, `help` alone, no noun), or a noun that does not exist (the error
 * suggests the closest). The bin's own option takes no value, so the first argument that is not
 * an option is the noun.
 */
export function nounOf(args: string[]): string | undefined {
  const at = args.findIndex((arg) => !arg.startsWith('-'));
  if (at === -1 || args.slice(0, at).some((arg) => arg !== '--no-color')) return undefined;
  const noun = args[at] === 'help' ? args[at + 1] : args[at];
  return noun !== undefined && Object.hasOwn(nouns, noun) ? noun : undefined;
}
