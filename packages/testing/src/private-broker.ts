import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connections, runEntryPoint } from './index.js';

/** A Kafka broker of one test's own, on free ports, that the test may stop and start again. */
export interface PrivateBroker {
  /** Its bootstrap address, e.g. `['127.0.0.1:40123']`. */
  brokers: string[];
  /** Starts it (`npm run stack -- up` on its own stack home) and waits until it answers. */
  start(): void;
  /** Stops it (`npm run stack -- down`): clients then see connection refused. */
  stop(): void;
  /** Stops it and deletes its files. */
  remove(): void;
}

/** A port nothing listens on now (the OS's choice), for a server a test starts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a broker of its own (the local stack's Kafka, in a stack home of its own), so stopping
 * it disturbs no other test. The shared registry and PostgreSQL are found running and left alone.
 */
export async function privateBroker(): Promise<PrivateBroker> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-broker-'));
  const [port, controllerPort] = [await freePort(), await freePort()];
  const env = {
    SHOAL_STACK_HOME: home,
    SHOAL_KAFKA_PORT: String(port),
    SHOAL_KAFKA_CONTROLLER_PORT: String(controllerPort),
    SHOAL_REGISTRY_PORT: new URL(connections().SCHEMA_REGISTRY_URL).port,
  };
  const stack = (command: 'up' | 'down') => {
    const result = runEntryPoint('deploy/local-stack/src/cli.ts', [command], env);
    if (result.status !== 0) throw new Error(`stack ${command}: ${result.stderr}`);
  };
  stack('up');
  return {
    brokers: [`127.0.0.1:${port}`],
    start: () => stack('up'),
    stop: () => stack('down'),
    remove: () => {
      stack('down');
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}
