import cliProgress from 'cli-progress';
import { message } from './terminal.js';

/**
 * Progress of a long command, on stderr (shared/CLI.md): on a terminal that allows animation (a
 * TTY, no NO_COLOR, TERM not dumb, no --no-color) a cli-progress bar with done/total, the rate and
 * the ETA; anywhere else a plain line every 10 s with the same figures, so logs of scripted runs
 * stay readable. `stop` ends either.
 */
export interface Progress {
  /** `done` of `total`: a total given replaces the one before (a run that learns it as it reads). */
  update(done: number, total?: number): void;
  stop(): void;
}

export const PLAIN_PROGRESS_EVERY_MS = 10_000;

const perSecond = (done: number, startedAt: number) =>
  done / Math.max((Date.now() - startedAt) / 1000, 0.001);

const seconds = (s: number) => (Number.isFinite(s) ? `${Math.ceil(s)} s` : '?');

export function progressOf(what: string, total: number, animate: boolean): Progress {
  const startedAt = Date.now();
  if (animate) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: `${what} {bar} {value}/{total} | {rate}/s | ETA {eta_formatted}`,
        // an interrupted run (Ctrl-C exits at once) would leave a hidden cursor hidden
        hideCursor: false,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { rate: '0' });
    return {
      update: (done, total) => {
        if (total !== undefined) bar.setTotal(total);
        bar.update(done, { rate: perSecond(done, startedAt).toFixed(0) });
      },
      stop: () => bar.stop(),
    };
  }
  let done = 0;
  let of = total;
  const timer = setInterval(() => {
    const rate = perSecond(done, startedAt);
    message(`${what}: ${done} of ${of} (${rate.toFixed(0)}/s, ETA ${seconds((of - done) / rate)})`);
  }, PLAIN_PROGRESS_EVERY_MS);
  timer.unref();
  return {
    update: (n, total) => {
      done = n;
      of = total ?? of;
    },
    stop: () => clearInterval(timer),
  };
}
