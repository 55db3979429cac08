import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metricsRegistry } from './metrics.js';

export type Check = () => Promise<void>;

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
      void Promise.all(
        Object.entries(checks).map(async ([name, check]) => {
          try {
            await check();
            return [name, { status: 'ok' }] as const;
          } catch (error) {
            return [name, { status: 'down', error: (error as Error).message }] as const;
          }
        }),
      ).then((results) => {
        const ready = results.every(([, r]) => r.status === 'ok');
        reply(
          ready ? 200 : 503,
          JSON.stringify({
            status: ready ? 'ready' : 'not_ready',
            checks: Object.fromEntries(results),
          }),
        );
      });
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
