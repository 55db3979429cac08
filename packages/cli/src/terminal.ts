import os from 'node:os';
import { createInterface } from 'node:readline/promises';
import Table from 'cli-table3';
import picocolors from 'picocolors';

/**
 * What `shoal` decides about the terminal (shared/CLI.md): data goes to stdout, messages to
 * stderr; colour (and progress bars, progress.ts) only on a TTY and never with NO_COLOR, TERM=dumb or --no-color (picocolors is
 * told, since it would turn colour on whenever CI is set); questions only when stdin and stderr
 * are a TTY.
 */

export type Colors = ReturnType<typeof picocolors.createColors>;

/** Whether `stream` may carry colour and animation (progress bars). */
export const terminalAllows = (stream: NodeJS.WriteStream, colorOption: boolean): boolean =>
  colorOption && stream.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';

export function colorsFor(stream: NodeJS.WriteStream, colorOption: boolean): Colors {
  return picocolors.createColors(terminalAllows(stream, colorOption));
}

export const canAsk = (): boolean => process.stdin.isTTY === true && process.stderr.isTTY === true;

/** Asks a yes/no question on stderr; only "y" or "yes" is a yes. */
export async function confirm(question: string): Promise<boolean> {
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  // readline takes Ctrl-C from the terminal itself; without this it would leave the question open
  prompt.on('SIGINT', () => process.kill(process.pid, 'SIGINT'));
  try {
    const answer = await prompt.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    prompt.close();
  }
}

export const defaultActor = (): string => `${os.userInfo().username}@${os.hostname()}`;

export const message = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** A human table: cli-table3's own colouring is off, headers are coloured by our decision. */
export function table(colors: Colors, head: string[], rows: (string | number)[][]): string {
  const rendered = new Table({
    head: head.map((h) => colors.bold(h)),
    style: { head: [], border: [] },
  });
  rendered.push(...rows);
  return rendered.toString();
}

/** Records for scripts: one JSON object per line. */
export function jsonLines(records: object[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length ? '\n' : '');
}
