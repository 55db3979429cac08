import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metricsRegistry } from './metrics.js';

export type Check = () => Promise<void>;

export interface Readiness {
  ready: boolean;
  body: {
    status: 'ready' | 'not_ready';
    checks: Record<string, { status: 'ok' } | { status: 'down'; error: string }>;
  };
}

/** Runs every check; each integration gets its own status, so a missing dependency is visible. */
export async function readiness(checks: Record<string, Check>): Promise<Readiness> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        await check();
        return [name, { status: 'ok' as const }] as const;
      } catch (error) {
        return [name, { status: 'down' as const, error: (error as Error).message }] as const;
      }
    }),
  );
  const ready = results.every(([, r]) => r.status === 'ok');
  return {
    ready,
    body: { status: ready ? 'ready' : 'not_ready', checks: Object.fromEntries(results) },
  };
}

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * `/healthz` (the process is alive), `/readyz` (each integration with its own status: a missing
 * dependency is visible, not a silent warning) and Prometheus `/metrics`.
 */
export async function startOpsServer(
  port: number,
  checks: Record<string, Check>,
): Promise<OpsServer> {
  const server = http.createServer((request, response) => {
    const reply = (status: number, body: string, type = 'application/json') => {
      response.writeHead(status, { 'content-type': type });
      response.end(body);
    };
    if (request.url === '/healthz') return reply(200, '{"status":"ok"}');
    if (request.url === '/metrics') {
      void metricsRegistry.metrics().then((text) => reply(200, text, metricsRegistry.contentType));
      return;
    }
    if (request.url === '/readyz') {
      void readiness(checks).then(({ ready, body }) =>
        reply(ready ? 200 : 503, JSON.stringify(body)),
      );
      return;
    }
    reply(404, '{"error":"not found"}');
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
