import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

// The error tracker against a real ingest: a local HTTP server on 127.0.0.1 that receives Sentry
// envelopes as a Sentry ingest does (POST /api/<project>/envelope/), records them and answers as
// told. Each case runs a process of its own (the SDK installs process-wide handlers).

const fixture = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'fixtures/reporting-process.ts',
);

interface Envelope {
  url: string;
  header: Record<string, unknown>;
  items: { type: string; payload: Record<string, unknown> }[];
}
let envelopes: Envelope[] = [];
let answer = 200;
let ingest: http.Server;
let port = 0;

beforeAll(async () => {
  ingest = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean);
      const items: Envelope['items'] = [];
      for (let i = 1; i + 1 < lines.length; i += 2)
        items.push({
          type: (JSON.parse(lines[i]!) as { type: string }).type,
          payload: JSON.parse(lines[i + 1]!) as Record<string, unknown>,
        });
      envelopes.push({
        url: req.url ?? '',
        header: JSON.parse(lines[0] ?? '{}') as Record<string, unknown>,
        items,
      });
      res.writeHead(answer, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => ingest.listen(0, '127.0.0.1', resolve));
  port = (ingest.address() as AddressInfo).port;
});
afterAll(() => new Promise((resolve) => ingest.close(resolve)));
beforeEach(() => {
  envelopes = [];
  answer = 200;
});

const dsn = () => `http://publickey@127.0.0.1:${port}/42`;

/** Runs the fixture; asynchronously, so this process's ingest answers it meanwhile. */
function run(mode: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--conditions=shoal-source', fixture, mode],
      { env: { ...process.env, ...env } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** The exception events the ingest received, by message. */
const exceptions = () =>
  envelopes.flatMap((e) =>
    e.items
      .filter((i) => i.type === 'event')
      .map((i) => {
        const values = (
          i.payload.exception as { values: { value: string; mechanism?: { handled: boolean } }[] }
        ).values;
        return {
          url: e.url,
          event: i.payload,
          value: values.at(-1)!.value,
          handled: values.at(-1)!.mechanism?.handled,
        };
      }),
  );

describe('every service reports its unhandled errors when SHOAL_ERROR_TRACKER_DSN is set', () => {
  it('an uncaught exception reaches the ingest, tagged with the service, and the process still exits 1', async () => {
    const { status } = await run('throw', { SHOAL_ERROR_TRACKER_DSN: dsn() });
    expect(status).toBe(1);
    const [reported] = exceptions();
    expect(reported).toMatchObject({ value: 'uncaught in the fixture', handled: false });
    expect(reported!.url).toMatch(/^\/api\/42\/envelope\/\?.*sentry_key=publickey/);
    expect(reported!.event).toMatchObject({
      level: 'fatal',
      server_name: 'fixture-service',
      tags: { service: 'fixture-service' },
    });
  });

  it('an unhandled rejection reaches it too', async () => {
    await run('reject', { SHOAL_ERROR_TRACKER_DSN: dsn() });
    expect(exceptions().map((e) => e.value)).toEqual(['unhandled rejection in the fixture']);
  });

  it("a service's fatal stop is reported before it exits", async () => {
    const { status } = await run('fatal', { SHOAL_ERROR_TRACKER_DSN: dsn() });
    expect(status).toBe(1);
    expect(exceptions()).toMatchObject([
      { value: 'fatal stop of the fixture', event: { level: 'fatal' } },
    ]);
  });

  it('/readyz shows the tracker configured while reports are taken, down (saying why) while the ingest refuses them', async () => {
    const ok = await run('state', { SHOAL_ERROR_TRACKER_DSN: dsn() });
    expect(JSON.parse(ok.stdout)).toEqual({
      status: 'configured',
      detail: `unhandled errors are reported to 127.0.0.1:${port}`,
    });
    answer = 500;
    const refused = await run('state', { SHOAL_ERROR_TRACKER_DSN: dsn() });
    expect(JSON.parse(refused.stdout)).toEqual({
      status: 'down',
      detail: `reports to 127.0.0.1:${port} fail: the ingest answered HTTP 500`,
    });
    expect(refused.stdout).not.toContain('publickey');
    // a DSN the SDK's parser refuses (a dash in the key) reports nothing: down, saying so
    const refusedDsn = await run('state', {
      SHOAL_ERROR_TRACKER_DSN: `http://public-key@127.0.0.1:${port}/42`,
    });
    expect(JSON.parse(refusedDsn.stdout)).toEqual({
      status: 'down',
      detail: `reports to 127.0.0.1:${port} fail: the SDK refused the DSN (expected <scheme>://<key>@<host>/<project id>)`,
    });
  });

  it('an ingest nobody listens on is down too; unset and off start nothing and send nothing', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const down = await run('state', { SHOAL_ERROR_TRACKER_DSN: `http://k@127.0.0.1:${closed}/1` });
    expect(JSON.parse(down.stdout)).toMatchObject({ status: 'down' });
    expect(JSON.parse(down.stdout).detail).toMatch(
      new RegExp(`^reports to 127.0.0.1:${closed} fail: .+`),
    );
    for (const value of ['', 'off']) {
      const quiet = await run('throw', { SHOAL_ERROR_TRACKER_DSN: value });
      expect(quiet.status).toBe(1);
      expect(quiet.stderr).toContain('started=false');
    }
    expect(envelopes).toEqual([]);
  });
});
