import os from 'node:os';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { metrics, readiness, startOpsServer, type OpsServer } from '../src/index.js';

let server: OpsServer;
beforeAll(async () => {
  server = await startOpsServer(0, {
    postgres: async () => undefined,
    registry: async () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:8081');
    },
  });
});
afterAll(() => server.close());

const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`);

it('/healthz answers while the process lives', async () => {
  expect((await get('/healthz')).status).toBe(200);
});

it('/readyz names each integration with its own status; one down makes it 503', async () => {
  const response = await get('/readyz');
  expect(response.status).toBe(503);
  expect(await response.json()).toEqual({
    status: 'not_ready',
    checks: {
      postgres: { status: 'ok' },
      registry: { status: 'down', error: 'connect ECONNREFUSED 127.0.0.1:8081' },
    },
    error_tracker: {
      status: 'not configured',
      detail: 'SHOAL_ERROR_TRACKER_DSN is unset: unhandled errors are only logged',
    },
  });
});

it('/readyz shows the error tracker, which never decides readiness', async () => {
  process.env.SHOAL_ERROR_TRACKER_DSN = 'not a dsn';
  try {
    const { ready, body } = await readiness({ postgres: async () => undefined });
    expect(ready).toBe(true);
    expect(body.error_tracker).toEqual({
      status: 'down',
      detail: 'SHOAL_ERROR_TRACKER_DSN is not a DSN (a URL)',
    });
  } finally {
    delete process.env.SHOAL_ERROR_TRACKER_DSN;
  }
});

it('/metrics serves the declared metrics in Prometheus text format', async () => {
  metrics.failed.inc({
    group: 'g',
    topic: 't',
    reason: 'stale_reference',
    entity: 'project',
    action: 'dlq',
  });
  const text = await (await get('/metrics')).text();
  expect(text).toContain(
    'shoal_messages_failed_total{group="g",topic="t",reason="stale_reference",entity="project",action="dlq"} 1',
  );
  expect(text).toContain('# TYPE shoal_consumer_lag gauge');
});

it('listens on loopback unless given a host: a container sets 0.0.0.0 so probes from outside reach it', async () => {
  const outside = Object.values(os.networkInterfaces())
    .flat()
    .find((a) => a?.family === 'IPv4' && !a.internal)?.address;
  expect(outside, 'this test needs a non-loopback IPv4 address').toBeDefined();
  const reach = (port: number) =>
    fetch(`http://${outside}:${port}/healthz`).then(
      (r) => r.status,
      () => 'refused',
    );
  expect(await reach(server.port)).toBe('refused');
  const everywhere = await startOpsServer(0, {}, '0.0.0.0');
  try {
    expect(await reach(everywhere.port)).toBe(200);
  } finally {
    await everywhere.close();
  }
});
