/**
 * The outbox relay in a worker thread of its own (relay-worker.ts), so its reads of the outbox,
 * encoding and produce requests do not take turns with consuming on the consumer's event loop. The
 * relay itself is unchanged (relay.ts: one round per service schema at a time, `seq` order, marks
 * after the produce), so its order and delivery guarantees are those of `OutboxRelay`.
 *
 * The parent keeps what cannot cross a thread: the relay's metrics (forwarded into this process's
 * registry) and the hook (the thread waits at the hook point while the parent runs it). A thread
 * that ends without being told to (an uncaught error, a crash) loses nothing: its open round rolls
 * back with its connection; it is started again with backoff, and meanwhile the rows wait in the
 * outbox. A thread that cannot start when the consumer starts (the broker unreachable) fails the
 * start, as an `OutboxRelay` would.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { KafkaConnection, RegistryConnection } from '@shoal/config/connections';
import type { Logger } from '@shoal/observability';
import type { KafkaConfig } from 'kafkajs';
import { Backoff } from './backoff.js';
import { processRelayMetrics, type Relay, type RelayHook, type RelayMetrics } from './relay.js';

/** What the thread builds its relay from: plain data, copied into it. */
export interface RelayThreadSettings {
  /** Its logger's name (and the pool's application name, suffixed `-relay`). */
  name: string;
  logLevel: string;
  databaseUrl: string;
  schema: string;
  kafka: KafkaConnection & Pick<KafkaConfig, 'clientId' | 'retry'>;
  registry: RegistryConnection;
  topicNamespace: string;
  batchSize?: number;
  pollMs?: number;
  /** The parent has a hook: the thread waits for it at each hook point. */
  hooked: boolean;
}

export type ToRelayThread = { type: 'notify' } | { type: 'stop' } | { type: 'hooked'; id: number };

export type FromRelayThread =
  | { type: 'started' }
  | { type: 'hook'; point: RelayHook; id: number }
  | { type: 'metric'; metric: 'backlog'; events: number }
  | { type: 'metric'; metric: 'published'; topic: string; events: number }
  | { type: 'metric'; metric: 'failed'; topic: string; errorClass: string };

const here = import.meta.url;

/**
 * The thread's entry: the built module beside this one, or, run from the TypeScript sources, the
 * source module loaded through tsx (a worker does not inherit the parent's loader).
 */
function spawnThread(settings: RelayThreadSettings): Worker {
  if (!here.endsWith('.ts'))
    return new Worker(new URL('./relay-worker.js', here), { workerData: settings });
  // tsx's ESM register(), which the package exports beside the CommonJS one resolved here
  const tsx = pathToFileURL(
    createRequire(here)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  );
  const entry = new URL('./relay-worker.ts', here);
  return new Worker(
    `import(${JSON.stringify(tsx.href)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`,
    { eval: true, workerData: settings, execArgv: ['--conditions=shoal-source'] },
  );
}

export class RelayThread implements Relay {
  private worker?: Worker;
  private stopping = false;
  private restartTimer?: NodeJS.Timeout;
  /** A restart's thread while it starts. */
  private restarting?: Promise<void>;
  private readonly backoff = new Backoff(500, 30_000);

  constructor(
    private readonly settings: Omit<RelayThreadSettings, 'hooked' | 'logLevel'>,
    private readonly options: {
      logger: Logger;
      hook?: (point: RelayHook) => void | Promise<void>;
      metrics?: RelayMetrics;
      /** After a thread that ended unasked is running again (tests wait on it). */
      onRestarted?: () => void;
    },
  ) {}

  /** Resolves once the thread's relay runs; rejects with its error when it cannot start. */
  async start(): Promise<void> {
    this.worker = await this.spawn();
  }

  notify(): void {
    this.worker?.postMessage({ type: 'notify' } satisfies ToRelayThread);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    await this.restarting;
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.postMessage({ type: 'stop' } satisfies ToRelayThread);
    await exited;
  }

  /** The running thread, for tests that end it as a crash would. */
  get thread(): Worker | undefined {
    return this.worker;
  }

  private spawn(): Promise<Worker> {
    const { logger, hook } = this.options;
    const worker = spawnThread({
      ...this.settings,
      logLevel: logger.level,
      hooked: hook !== undefined,
    });
    const metrics = this.options.metrics ?? processRelayMetrics;
    worker.on('message', (message: FromRelayThread) => {
      if (message.type === 'hook')
        void Promise.resolve(hook?.(message.point)).finally(() =>
          worker.postMessage({ type: 'hooked', id: message.id } satisfies ToRelayThread),
        );
      else if (message.type === 'metric') {
        if (message.metric === 'backlog') metrics.backlog(message.events);
        else if (message.metric === 'published') metrics.published(message.topic, message.events);
        else metrics.failed(message.topic, message.errorClass);
      }
    });
    return new Promise<Worker>((resolve, reject) => {
      let started = false;
      let failure: unknown;
      worker.on('message', (message: FromRelayThread) => {
        if (message.type !== 'started') return;
        started = true;
        resolve(worker);
      });
      worker.on('error', (error) => {
        failure = error;
        if (started) logger.error({ err: error }, 'outbox relay thread failed');
      });
      worker.once('exit', (code) => {
        if (!started) {
          reject(
            failure ?? new Error(`outbox relay thread exited (code ${code}) before it started`),
          );
          return;
        }
        if (this.worker !== worker || this.stopping) return;
        this.worker = undefined;
        logger.error(
          { code },
          'outbox relay thread ended unexpectedly; starting it again (unpublished rows wait in the outbox)',
        );
        this.restartLater();
      });
    });
  }

  /** A thread that ended unasked: started again after a backoff, until one runs (or stop()). */
  private restartLater(): void {
    const { delayMs } = this.backoff.next('thread');
    this.restartTimer = setTimeout(() => {
      this.restarting = this.spawn().then(
        (worker) => {
          this.worker = worker;
          this.backoff.reset('thread');
          this.options.onRestarted?.();
        },
        (error: unknown) => {
          this.options.logger.warn({ err: error }, 'outbox relay thread could not start; retrying');
          if (!this.stopping) this.restartLater();
        },
      );
    }, delayMs);
  }
}
