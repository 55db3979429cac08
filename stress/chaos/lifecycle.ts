import { randomUUID } from 'node:crypto';
import type { GroupEvent, LifecycleCommand } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import {
  freePort,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  withAdmin,
  type RunningEntryPoint,
} from '@shoal/testing';

/**
 * Lifecycle under kill -9 (issue 16's must-show), `npm run chaos -- --service lifecycle`. Its
 * main (intake, decide, the sweeper and the agent API in one process) runs as a child on topics,
 * a consumer group and a database of its own. Half the issues open through intake (group_created
 * on group events, group_activity after), half by `open` system commands on the commands topic;
 * then agents work every issue through the HTTP API (a transition to triaged, then notes and run
 * events, each request retried with its Idempotency-Key while the process is gone) and send notes
 * straight to the topic, until the kills are over and at least `commands` were sent. The process
 * is SIGKILLed `kills` times, each at a random instant 1–4 s after it is ready (/readyz: both
 * groups joined), and restarted. An agent reads shoal.lifecycle.v1
 * from the start the whole time. Checked at the end (`problems` lists what failed):
 * - per issue, on what the reader saw, deduplicated by event id: versions 1…N in order, no gap,
 *   N the issue's version, each version under one event id (repeats after a kill are counted);
 * - every command sent has exactly one outcome row, `applied`; one history row per command;
 * - every API request in flight at a kill applied once and answers GET /v1/commands/{id}.
 */

const main = `${repoRoot}services/lifecycle/src/main.ts`;
const TOKEN = 'tok-chaos';

export interface LifecycleChaosOptions {
  /** Commands agents send at least (through the API and the topic). */
  commands: number;
  kills: number;
  log?: (line: string) => void;
}

export interface LifecycleChaosReport {
  target: 'lifecycle';
  issues: number;
  commands: { api: number; topic: number; system: number; groupEvents: number };
  kills: number;
  /** API requests unanswered when a kill came (each retried with its key after the restart). */
  inFlightAtKills: number;
  /** Requests the kills interrupted (connection refused or reset, or 503), retried. */
  retried: number;
  events: { records: number; distinct: number; duplicatesByEventId: number };
  problems: string[];
  seconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function lifecycleChaos(
  options: LifecycleChaosOptions,
): Promise<LifecycleChaosReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const ns = await isolatedTopics({ partitions: { lifecycleCommands: 3, groupEvents: 3 } });
  const db = await isolatedDatabase({ migrate: false });
  const children: RunningEntryPoint[] = [];
  const problems: string[] = [];
  const issueCount = Math.max(4, Math.min(200, Math.round(options.commands / 25)));
  const issues = Array.from({ length: issueCount }, (_, i) => 7001 + i);
  const [opsPort, apiPort] = [await freePort(), await freePort()];
  const env = {
    DATABASE_URL: db.url,
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    SHOAL_CONSUMER_GROUP: uniqueName('chaos-lifecycle-'),
    SHOAL_OPS_PORT: String(opsPort),
    SHOAL_API_PORT: String(apiPort),
    SHOAL_API_TOKENS: `agent-1:${TOKEN}:read+claim+write`,
    SHOAL_SESSION_TIMEOUT_MS: '3000',
  };
  let running!: RunningEntryPoint;
  const start = async () => {
    running = spawnEntryPoint(
      main,
      { ...env, SHOAL_MAX_BATCH_SIZE: String(50 + Math.floor(Math.random() * 450)) },
      '"agent API listening"',
    );
    children.push(running);
    await Promise.race([
      running.ready,
      running.exited.then((code) => {
        throw new Error(
          `lifecycle exited ${code} before it listened:\n${running.output.join('\n')}`,
        );
      }),
    ]);
  };

  // the agent reading shoal.lifecycle.v1 from its start, throughout
  const seen: { key: string; eventId: string; version: number }[] = [];
  const reader = kafka().consumer({ groupId: uniqueName('agent-reader-') });
  const producer = kafka().producer({ idempotent: true });
  try {
    await reader.connect();
    await reader.subscribe({ topic: ns.topics.lifecycle, fromBeginning: true });
    await reader.run({
      eachMessage: async ({ message }) => {
        const event = JSON.parse(message.value!.subarray(5).toString()) as {
          event_id: string;
          version: number;
        };
        seen.push({
          key: message.key!.toString(),
          eventId: event.event_id,
          version: event.version,
        });
      },
    });
    await producer.connect();

    // half open through intake, half by system commands on the commands topic
    const viaIntake = issues.filter((_, i) => i % 2 === 0);
    const viaSystem = issues.filter((_, i) => i % 2 === 1);
    const groupEvent = (id: number, type: 'group_created' | 'group_activity', n: number) =>
      ({
        event_id: randomUUID(),
        event_type: type,
        occurred_at: new Date().toISOString(),
        group_id: id,
        project_id: 1,
        level: 'error',
        title: `issue ${id}`,
        ...(type === 'group_created'
          ? { status: 'unresolved' }
          : { times_seen: n + 1, times_seen_delta: 1 }),
      }) as GroupEvent;
    const systemOpens = viaSystem.map((id): LifecycleCommand => ({
      command_id: randomUUID(),
      command: 'open',
      issue_id: id,
      origin: 'system',
      actor: 'chaos',
      issued_at: new Date().toISOString(),
      project_id: 1,
      group: { title: `issue ${id}`, level: 'warning', times_seen: 1 },
    }));
    let groupEvents = 0;
    const sendGroupEvents = async (events: GroupEvent[]) => {
      groupEvents += events.length;
      await producer.send({
        topic: ns.topics.groupEvents,
        acks: -1,
        messages: events.map((e) => ({
          key: String(e.group_id),
          value: JSON.stringify(e),
          headers: { [HEADER.messageId]: e.event_id },
        })),
      });
    };
    const sendCommands = (commands: LifecycleCommand[]) =>
      producer.send({
        topic: ns.topics.lifecycleCommands,
        acks: -1,
        messages: commands.map((c) => ({
          key: String(c.issue_id),
          value: JSON.stringify(c),
          headers: { [HEADER.messageId]: c.command_id },
        })),
      });
    await sendGroupEvents(viaIntake.map((id) => groupEvent(id, 'group_created', 0)));
    await sendCommands(systemOpens);
    await start();

    const api = (path: string, init: RequestInit = {}) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          ...(init.body ? { 'content-type': 'application/json' } : {}),
          ...init.headers,
        },
        signal: AbortSignal.timeout(15_000),
      });
    const outcomeOf = async (key: string) => {
      const reply = await api(`/v1/commands/${key}`).catch(() => undefined);
      return reply?.status === 200
        ? ((await reply.json()) as { outcome: string; reason?: string | null })
        : undefined;
    };

    const decided = new Map<string, string>();
    const pending = new Set<string>();
    const inFlightAtKills = new Set<string>();
    let retried = 0;
    /** One API command until it is decided, retried under its Idempotency-Key while the process is gone. */
    async function command(id: number, path: string, body: object): Promise<void> {
      const key = randomUUID();
      pending.add(key);
      try {
        for (;;) {
          const reply = await api(path, {
            method: 'POST',
            body: JSON.stringify(body),
            headers: { 'idempotency-key': key, prefer: 'wait=5' },
          }).catch(() => undefined);
          if (reply?.status === 200) {
            const answer = (await reply.json()) as { outcome: string; reason?: string | null };
            decided.set(key, answer.reason ? `${answer.outcome} ${answer.reason}` : answer.outcome);
            return;
          }
          if (reply?.status === 202) {
            await waitFor(`command ${key} decided`, async () => {
              const answer = await outcomeOf(key);
              if (answer) decided.set(key, answer.outcome);
              return answer !== undefined;
            });
            return;
          }
          if (reply && reply.status !== 503) {
            // reported (an API command must apply), not thrown: the run goes on to its checks
            decided.set(key, `HTTP ${reply.status} ${path} ${await reply.text()}`);
            return;
          }
          retried++;
          await sleep(200);
        }
      } finally {
        pending.delete(key);
      }
    }

    const topicNotes: LifecycleCommand[] = [];
    // an agent's command before its issue's open is held and parks the open behind it (until the
    // hold deadline): agents name issues they have read
    const opened: number[] = [];
    let apiSent = 0;
    let killing = true;
    const enough = () => apiSent + topicNotes.length >= options.commands;
    const agents = Promise.all(
      issues.map(async (id) => {
        await waitFor(
          `issue ${id} opened`,
          async () => (await api(`/v1/issues/${id}`).catch(() => undefined))?.status === 200,
          120_000,
        );
        opened.push(id);
        apiSent++;
        await command(id, `/v1/issues/${id}/transitions`, { to_status: 'triaged' });
        for (let n = 1; killing || !enough(); n++) {
          apiSent++;
          if (n % 3 === 0)
            await command(id, `/v1/issues/${id}/events`, {
              run_id: `run-${id}`,
              phase: 'progress',
            });
          else await command(id, `/v1/issues/${id}/notes`, { note: `note ${n}` });
          await sleep(50 + Math.random() * 150);
        }
      }),
    );
    // notes straight to the topic (as an agent with a producer would), and intake's telemetry
    const sidecar = (async () => {
      for (let round = 1; killing || !enough(); round++) {
        const notes = Array.from({ length: opened.length ? 5 : 0 }, (): LifecycleCommand => ({
          command_id: randomUUID(),
          command: 'add_note',
          issue_id: opened[Math.floor(Math.random() * opened.length)]!,
          origin: 'agent',
          actor: 'agent-2',
          issued_at: new Date().toISOString(),
          note: `topic note ${round}`,
        }));
        if (notes.length) await sendCommands(notes);
        topicNotes.push(...notes);
        await sendGroupEvents(viaIntake.map((id) => groupEvent(id, 'group_activity', round)));
        await sleep(300);
      }
    })();

    for (let k = 0; k < options.kills; k++) {
      // a random instant once both consumer groups have joined (else decide never gets going)
      await waitFor(
        'lifecycle ready',
        async () =>
          (await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => undefined))?.status ===
          200,
        120_000,
      );
      await sleep(1000 + Math.random() * 3000);
      for (const key of pending) inFlightAtKills.add(key);
      running.child.kill('SIGKILL');
      await running.exited;
      log(
        `kill ${k + 1}/${options.kills}: ${pending.size} API commands in flight, ${decided.size} decided`,
      );
      await start();
    }
    killing = false;
    await Promise.all([agents, sidecar]);
    log(`traffic done: ${apiSent} API commands, ${topicNotes.length} on the topic`);

    // drained: every command decided, the outbox published, the reader at the topic's end
    const sentIds = [
      ...decided.keys(),
      ...topicNotes.map((c) => c.command_id),
      ...systemOpens.map((c) => c.command_id),
    ];
    const outcomes = async () =>
      (
        await db.pool.query<{
          command_id: string;
          n: number;
          outcome: string;
          reason: string | null;
        }>(
          `SELECT command_id::text, count(*)::int AS n, min(outcome) AS outcome, min(reason) AS reason
           FROM lifecycle.lifecycle_commands WHERE command_id = ANY($1::uuid[]) GROUP BY command_id`,
          [sentIds],
        )
      ).rows;
    await waitFor(
      'every command decided',
      async () => (await outcomes()).length === sentIds.length,
      120_000,
    );
    await waitFor('the outbox published', async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM lifecycle.outbox WHERE published_at IS NULL',
      );
      return rows[0]!.n === 0;
    });
    const high = await withAdmin((admin) => admin.fetchTopicOffsets(ns.topics.lifecycle));
    const records = high.reduce((n, p) => n + Number(p.high), 0);
    await waitFor(
      `the reader at the topic's ${records} records`,
      async () => seen.length >= records,
    );

    // every command: one outcome row, applied; one history row each
    for (const row of await outcomes())
      if (row.n !== 1 || row.outcome !== 'applied')
        problems.push(
          `command ${row.command_id}: ${row.n} outcome rows, ${row.outcome} ${row.reason ?? ''}`,
        );
    for (const [key, outcome] of decided)
      if (outcome !== 'applied') problems.push(`API command ${key}: ${outcome}`);
    const { rows: twice } = await db.pool.query<{ command_id: string; n: number }>(
      `SELECT command_id::text, count(*)::int AS n FROM lifecycle.issue_history
       GROUP BY command_id HAVING count(*) > 1`,
    );
    for (const row of twice) problems.push(`command ${row.command_id}: ${row.n} history rows`);

    // in flight at a kill: applied once, readable at /v1/commands/{id} after the restarts
    for (const key of inFlightAtKills) {
      const answer = await outcomeOf(key);
      if (answer?.outcome !== 'applied')
        problems.push(
          `in-flight command ${key}: GET /v1/commands answered ${JSON.stringify(answer)}`,
        );
    }

    // the reader's view: per issue, deduplicated by event id, versions 1…N in order
    const { rows: versions } = await db.pool.query<{ id: string; version: number }>(
      'SELECT id::text, version FROM lifecycle.issues',
    );
    const byIssue = new Map<string, { eventId: string; version: number }[]>();
    for (const r of seen) byIssue.set(r.key, [...(byIssue.get(r.key) ?? []), r]);
    if (versions.length !== issues.length)
      problems.push(`${versions.length} issues opened of ${issues.length}`);
    for (const { id, version } of versions) {
      const events = byIssue.get(id) ?? [];
      const idOf = new Map<number, string>();
      const versionOf = new Map<string, number>();
      const firsts: number[] = [];
      for (const e of events) {
        if (versionOf.has(e.eventId)) {
          if (versionOf.get(e.eventId) !== e.version)
            problems.push(`issue ${id}: event ${e.eventId} again as version ${e.version}`);
          continue;
        }
        if (idOf.has(e.version))
          problems.push(`issue ${id}: version ${e.version} under two event ids`);
        versionOf.set(e.eventId, e.version);
        idOf.set(e.version, e.eventId);
        firsts.push(e.version);
      }
      const wanted = Array.from({ length: version }, (_, i) => i + 1);
      if (firsts.join() !== wanted.join())
        problems.push(`issue ${id}: versions ${firsts.join(',')} (its version is ${version})`);
    }
    const fatal = children.flatMap((c) => c.output.filter((l) => l.includes('"level":60')));
    if (fatal.length) problems.push(`fatal log lines: ${fatal.slice(0, 3).join(' | ')}`);

    running.child.kill('SIGTERM');
    if ((await running.exited) !== 0) problems.push('lifecycle did not exit 0 on SIGTERM');
    const distinct = new Set(seen.map((r) => r.eventId)).size;
    return {
      target: 'lifecycle',
      issues: issues.length,
      commands: {
        api: decided.size,
        topic: topicNotes.length,
        system: systemOpens.length,
        groupEvents,
      },
      kills: options.kills,
      inFlightAtKills: inFlightAtKills.size,
      retried,
      events: { records: seen.length, distinct, duplicatesByEventId: seen.length - distinct },
      problems: problems.slice(0, 20),
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } catch (error) {
    // what the process said that was wrong, for the failure's reader
    for (const line of children
      .flatMap((c) => c.output.filter((l) => /"level":[56]0/.test(l)))
      .slice(-20))
      log(line.slice(0, 2000));
    throw error;
  } finally {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    await Promise.allSettled([reader.disconnect(), producer.disconnect()]);
    await Promise.allSettled([db.drop(), ns.drop()]);
  }
}
