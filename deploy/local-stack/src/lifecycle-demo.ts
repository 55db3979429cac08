import type { Pool } from '@shoal/db';
import { waitUntil } from './processes.js';

/**
 * `npm start -- --demo`, after the groups: an agent works the most severe open issue through the
 * agent API — claims it (a second agent's claim gets 409 naming the holder), renews the lease, moves
 * it to in_progress, notes, reports a run, hands it over for verification resolved in a commit,
 * then resolves it in a release — and the issue's history and its lifecycle events are printed.
 * Every step is a real request to the running lifecycle process; a refusal stops the demo, named.
 */

export interface Agent {
  actor: string;
  token: string;
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;

export async function runLifecycleDemo(options: {
  apiUrl: string;
  agents: [Agent, Agent];
  /** A pool on lifecycle's schema: the events it published (its outbox). */
  pool: Pool;
  lifecycleTopic: string;
  release: string;
  log: (line: string) => void;
}): Promise<{ history: Record<string, unknown>[]; events: Record<string, unknown>[] }> {
  const [first, second] = options.agents;
  const call = async (
    agent: Agent,
    method: string,
    path: string,
    body?: object,
    headers: Record<string, string> = {},
  ): Promise<Reply> => {
    const response = await fetch(`${options.apiUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${agent.token}`,
        prefer: 'wait=10',
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const expectStatus = (reply: Reply, status: number, what: string): Reply => {
    if (reply.status !== status)
      throw new Error(`${what}: HTTP ${reply.status} ${JSON.stringify(reply.body)}`);
    return reply;
  };

  // the demo's groups become issues through intake and decide: wait for a claimable one
  let issue: Record<string, unknown> | undefined;
  await waitUntil(
    'a claimable issue from the demo traffic',
    async () => {
      for (const severity of SEVERITIES) {
        const page = await call(
          first,
          'GET',
          `/v1/issues?status=open&claimable=true&severity=${severity}&limit=1`,
        );
        issue = (page.body.issues as Record<string, unknown>[] | undefined)?.[0];
        if (issue) return true;
      }
      return false;
    },
    60_000,
  );
  const id = issue!.issue_id as number;
  options.log(`      issue ${id} (${String(issue!.severity)}): ${String(issue!.title)}`);

  const claimed = expectStatus(
    await call(first, 'POST', `/v1/issues/${id}/claim`, { lease_seconds: 120 }),
    200,
    `${first.actor} claims issue ${id}`,
  );
  const claim = { 'x-claim-token': claimed.body.claim_token as string };
  options.log(`      ${first.actor} claimed it for 120 s`);

  const lost = expectStatus(
    await call(second, 'POST', `/v1/issues/${id}/claim`, {}),
    409,
    `${second.actor}'s claim of a claimed issue`,
  );
  const held = lost.body.issue as { claimed_by?: string } | undefined;
  options.log(
    `      ${second.actor}'s claim: 409 ${String(lost.body.error)} (held by ${held?.claimed_by ?? '?'})`,
  );

  const sha = 'c0ffee1234567890c0ffee1234567890c0ffee12';
  const steps: [string, string, object][] = [
    ['renews the lease to 300 s', `/v1/issues/${id}/claim/renew`, { lease_seconds: 300 }],
    ['starts work: in_progress', `/v1/issues/${id}/transitions`, { to_status: 'in_progress' }],
    [
      'notes what it found',
      `/v1/issues/${id}/notes`,
      { note: 'root cause: the image worker holds every frame in memory; streaming fixes it' },
    ],
    [
      'reports its run',
      `/v1/issues/${id}/events`,
      { run_id: `demo-run-${id}`, phase: 'succeeded', summary: 'patch written, tests pass' },
    ],
    [
      'hands it over for verification, fixed in a commit',
      `/v1/issues/${id}/resolve`,
      {
        to_status: 'awaiting_verification',
        type: 'in_commit',
        commit_shas: [sha],
        repository: 'example/shop',
        notes: 'stream frames instead of buffering them',
      },
    ],
  ];
  for (const [what, path, body] of steps) {
    expectStatus(await call(first, 'POST', path, body, claim), 200, `${first.actor} ${what}`);
    options.log(`      ${first.actor} ${what}`);
  }
  // verification ended the claim; the fix ships in a release
  expectStatus(
    await call(first, 'POST', `/v1/issues/${id}/resolve`, {
      type: 'in_release',
      release: options.release,
      release_sha: sha,
    }),
    200,
    `${first.actor} resolves issue ${id} in ${options.release}`,
  );
  options.log(`      ${first.actor} resolved it in release ${options.release}`);

  const read = expectStatus(await call(first, 'GET', `/v1/issues/${id}`), 200, `issue ${id}`);
  const history = (read.body.history as Record<string, unknown>[]).map((h) => ({
    version: h.version,
    event: h.event_type,
    actor: h.actor,
    from: h.from_status ?? '',
    to: h.to_status,
    at: h.at,
  }));
  const { rows } = await options.pool.query<Record<string, unknown>>(
    `SELECT payload->>'version' AS version, payload->>'event_type' AS event,
            payload->>'status' AS status, payload->>'claimed_by' AS claimed_by,
            coalesce(published_at::text, 'not yet') AS published, event_id::text AS event_id
       FROM outbox_events WHERE topic = $1 AND message_key = $2 ORDER BY seq, ordinal`,
    [options.lifecycleTopic, String(id)],
  );
  return { history, events: rows };
}
