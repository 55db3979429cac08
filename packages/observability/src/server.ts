import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ErrorTrackerLine } from '@shoal/config';
import { errorTrackerState } from './error-tracker.js';
import { metricsRegistry } from './metrics.js';

export type Check = () => Promise<void>;

export interface Readiness {
  ready: boolean;
  body: {
    status: 'ready' | 'not_ready';
    checks: Record<string, { status: 'ok' } | { status: 'down'; error: string }>;
    /** Shown, never deciding readiness: a deployment without a tracker must still become ready. */
    error_tracker: ErrorTrackerLine;
  };
}

/**
 * Runs every check; each integration gets its own status, so a missing dependency is visible; the
 * error tracker's line (`SHOAL_ERROR_TRACKER_DSN`) beside them.
 */
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
    body: {
      status: ready ? 'ready' : 'not_ready',
      checks: Object.fromEntries(results),
      error_tracker: errorTrackerState(),
    },
  };
}

/** One ops endpoint's answer; the same for the plain ops server and the Fastify plugin. */
export interface OpsAnswer {
  status: number;
  contentType: string;
  body: string;
}

export const opsPaths = ['/healthz', '/readyz', '/metrics'] as const;
export type OpsPath = (typeof opsPaths)[number];

/**
 * `/healthz` (the process is alive), `/readyz` (each integration with its own status: a missing
 * dependency is visible, not a silent warning; 503 while one is down) and Prometheus `/metrics`.
 */
export async function opsAnswer(path: OpsPath, checks: Record<string, Check>): Promise<OpsAnswer> {
  const json = 'application/json';
  switch (path) {
    case '/healthz':
      return { status: 200, contentType: json, body: '{"status":"ok"}' };
    case '/metrics':
      return {
        status: 200,
        contentType: metricsRegistry.contentType,
        body: await metricsRegistry.metrics(),
      };
    case '/readyz': {
      const { ready, body } = await readiness(checks);
      return { status: ready ? 200 : 503, contentType: json, body: JSON.stringify(body) };
    }
  }
}

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The ops endpoints (`opsAnswer`) on a port of their own, for services without an HTTP server; on
 * loopback unless told a host (in a container, `0.0.0.0`: probes and scrapes come from outside).
 */
export async function startOpsServer(
  port: number,
  checks: Record<string, Check>,
  host = '127.0.0.1',
): Promise<OpsServer> {
  const server = http.createServer((request, response) => {
    const path = opsPaths.find((p) => p === request.url);
    if (!path) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end('{"error":"not found"}');
      return;
    }
    void opsAnswer(path, checks).then(({ status, contentType, body }) => {
      response.writeHead(status, { 'content-type': contentType });
      response.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
