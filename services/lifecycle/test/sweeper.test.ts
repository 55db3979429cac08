import type { LifecycleCommand } from '@shoal/contracts';
import { readAll, waitFor, type IsolatedDatabase, type IsolatedTopics } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  agent,
  at,
  decideTestKit,
  issue,
  lifecycleEvents,
  open,
  outcomes,
  run,
  sha256,
  system,
} from './decide-support.js';

const kit = decideTestKit();
const token = sha256('sweeper-token');
const nowIso = () => new Date().toISOString();

/** The expire_claim commands on the topic (the sweeper's, through the outbox). */
const expiries = async (ns: IsolatedTopics) =>
  (await readAll(ns.topics.lifecycleCommands))
    .map(
      (r) =>
        JSON.parse(r.value!.subarray(r.value![0] === 0 ? 5 : 0).toString()) as LifecycleCommand,
    )
    .filter((c) => c.command === 'expire_claim');

describe('the lease sweeper', () => {
  let ns: IsolatedTopics;
  let db: IsolatedDatabase;
  beforeAll(async () => {
    ({ ns, db } = await kit.fresh());
    await kit.start(ns, db);
    kit.sweeper(ns, db);
  }, 120_000);

  it('a 2 s lease lapses: claim_expired, in_progress back to triaged, claimable; the old token is lease_expired', async () => {
    const id = 601;
    const [, claimed, working] = await run(
      ns,
      db,
      open(id, { issued_at: nowIso() }),
      agent({
        command: 'claim',
        issue_id: id,
        claim_token: token,
        lease_seconds: 2,
        issued_at: nowIso(),
      }),
      agent({
        command: 'transition',
        issue_id: id,
        to_status: 'in_progress',
        claim_token: token,
        issued_at: nowIso(),
      }),
    );
    expect([claimed!.outcome, working!.outcome]).toEqual(['applied', 'applied']);
    await waitFor(
      'the claim to expire',
      async () => (await issue(db, id))?.claimed_by === null,
      20_000,
    );
    expect(await issue(db, id)).toMatchObject({
      status: 'triaged',
      claim_expires_at: null,
      version: 4,
    });
    const events = await lifecycleEvents(ns, db, id);
    expect(events.at(-1)!.value).toMatchObject({
      event_type: 'claim_expired',
      previous_status: 'in_progress',
      status: 'triaged',
      actor: 'lifecycle-sweeper',
      origin: 'system',
      claimed_by: null,
    });
    const sent = (await expiries(ns)).filter((c) => c.issue_id === id);
    expect(sent).toEqual([expect.objectContaining({ claim_generation: 1, origin: 'system' })]);
    const [renew, other] = await run(
      ns,
      db,
      agent({ command: 'renew', issue_id: id, claim_token: token, issued_at: nowIso() }),
      agent({
        command: 'claim',
        issue_id: id,
        claim_token: sha256('next'),
        actor: 'agent-2',
        issued_at: nowIso(),
      }),
    );
    expect(renew).toMatchObject({ outcome: 'rejected', reason: 'lease_expired' });
    expect(other).toMatchObject({ outcome: 'applied', issue: { claimed_by: 'agent-2' } });
  });
});

describe('expire_claim as decide judges it', () => {
  let ns: IsolatedTopics;
  let db: IsolatedDatabase;
  beforeAll(async () => {
    ({ ns, db } = await kit.fresh());
    await kit.start(ns, db);
  }, 120_000);

  const expire = (id: number, generation: number, seconds: number) =>
    system({
      command: 'expire_claim',
      issue_id: id,
      claim_generation: generation,
      actor: 'lifecycle-sweeper',
      issued_at: at(seconds),
    });

  it('a renewed lease or a newer claim is not expired by an older sweep', async () => {
    const id = 701;
    const [, , , early, renewedFirst, wrongGeneration, expired] = await run(
      ns,
      db,
      open(id),
      agent({
        command: 'claim',
        issue_id: id,
        claim_token: token,
        lease_seconds: 10,
        issued_at: at(10),
      }),
      agent({
        command: 'renew',
        issue_id: id,
        claim_token: token,
        lease_seconds: 10,
        issued_at: at(15),
      }),
      expire(id, 1, 20), // the lease was renewed to 25 s: still live
      expire(id, 1, 24),
      expire(id, 2, 30), // no such claim
      expire(id, 1, 25),
    );
    expect(early).toMatchObject({ outcome: 'ignored', reason: 'lease_live' });
    expect(renewedFirst).toMatchObject({ outcome: 'ignored', reason: 'lease_live' });
    expect(wrongGeneration).toMatchObject({ outcome: 'ignored', reason: 'claim_ended' });
    // decided at 30 s (the clock never goes back): the lease ended at 25 s
    expect(expired).toMatchObject({ outcome: 'applied', version: 4, issue: { claimed_by: null } });
  });
});

/** The expire_claim commands the sweeper wrote to the outbox (published or not). */
const expiriesInOutbox = async (db: IsolatedDatabase) =>
  (
    await db.pool.query<{ payload: LifecycleCommand }>(
      `SELECT e->'payload' AS payload FROM outbox, json_array_elements(events) e
       WHERE e->'payload'->>'command' = 'expire_claim' ORDER BY seq`,
    )
  ).rows.map((r) => r.payload);

describe('a lagging decide consumer', () => {
  it('is sent one expire_claim per claim, however many sweeps run, and applies it once', async () => {
    const { ns, db } = await kit.fresh();
    const group = 'decide-lagging';
    const consumer = await kit.start(ns, db, {}, group);
    const id = 801;
    const claim = agent({
      command: 'claim',
      issue_id: id,
      claim_token: token,
      lease_seconds: 1,
      issued_at: at(10),
    });
    await run(ns, db, open(id), claim);
    await consumer.stop();
    // decide (and its relay) down; the sweeper's clock is past the lease; it sweeps every 200 ms
    const sweeping = kit.sweeper(ns, db, () => Date.parse(at(100)));
    await waitFor(
      'the expiry to be written',
      async () => (await expiriesInOutbox(db)).length > 0,
      20_000,
    );
    await new Promise((r) => setTimeout(r, 1500));
    await sweeping.stop();
    const sent = await expiriesInOutbox(db);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ issue_id: id, claim_generation: 1, issued_at: at(100) });
    await kit.start(ns, db, {}, group);
    const [expired] = await outcomes(db, sent);
    expect(expired).toMatchObject({ outcome: 'applied', version: 3 });
    expect(await expiries(ns)).toHaveLength(1);
    // its claim ended: the sweeper's record of it goes at the next sweep, and nothing more is sent
    kit.sweeper(ns, db, () => Date.parse(at(100)));
    await waitFor(
      'claim_sweeps pruned',
      async () => (await db.pool.query('SELECT 1 FROM claim_sweeps')).rowCount === 0,
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(await expiriesInOutbox(db)).toHaveLength(1);
  });
});
