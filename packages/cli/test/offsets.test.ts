import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { migrate } from '@shoal/db';
import {
  createTestTopics,
  isolatedDatabase,
  kafka,
  repoRoot,
  uniqueName,
  withAdmin,
  type IsolatedDatabase,
} from '@shoal/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bin, shoalRunners } from './support.js';

// `shoal offsets` as operators run it (the workspace bin), against a real topic and a database
// whose runtime tables live in the service's own schema.

const service = 'grouping';
const group = 'grouping-test';
let db: IsolatedDatabase;
let topic: string;

const { shoal, shoalOnTerminal } = shoalRunners(() => ({ DATABASE_URL: db.url }));

const resetArgs = (...extra: string[]) => [
  'offsets',
  'reset',
  '--service',
  service,
  '--group',
  group,
  '--topic',
  topic,
  '--partition',
  '0',
  '--reason',
  'Kafka data was reset',
  ...extra,
];

async function storedRow(partition = 0) {
  const { rows } = await db.pool.query(
    `SELECT next_offset, last_record_id, halted_at, halted_reason FROM ${service}.consumer_offsets
     WHERE consumer_group = $1 AND topic = $2 AND partition = $3`,
    [group, topic, partition],
  );
  return rows[0];
}

const resets = async () =>
  (
    await db.pool.query(
      `SELECT consumer_group, topic, partition, from_offset, to_offset, actor, reason FROM ${service}.offset_resets ORDER BY id`,
    )
  ).rows;

beforeAll(async () => {
  db = await isolatedDatabase({ migrate: false });
  await db.pool.query(`CREATE SCHEMA ${service}`);
  const inSchema = new URL(db.url);
  inSchema.searchParams.set('options', `-c search_path=${service}`);
  await migrate({ databaseUrl: inSchema.toString(), direction: 'up' });

  topic = uniqueName('cli-offsets.');
  await createTestTopics([{ topic, numPartitions: 2 }]);
  const producer = kafka().producer();
  await producer.connect();
  await producer.send({
    topic,
    messages: Array.from({ length: 5 }, (_, i) => ({ partition: 0, value: `m-${i}` })),
  });
  await producer.disconnect();
});

afterAll(async () => {
  await withAdmin((admin) => admin.deleteTopics({ topics: [topic] }));
  await db.drop();
});

// partition 0: applied up to m-1 (next offset 2), then halted; partition 1: nothing applied yet
beforeEach(async () => {
  await db.pool.query(`TRUNCATE ${service}.consumer_offsets, ${service}.offset_resets`);
  await db.pool.query(
    `INSERT INTO ${service}.consumer_offsets
       (consumer_group, topic, partition, next_offset, last_record_id, halted_at, halted_reason)
     VALUES ($1, $2, 0, 2, 'm-1', now(), 'the record at offset 1 is not m-1'),
            ($1, $2, 1, -1, NULL, NULL, NULL)`,
    [group, topic],
  );
});

describe('shoal offsets list', () => {
  it('shows each stored offset beside the high watermark, the lag and the halt', () => {
    const json = shoal(['offsets', 'list', '--service', service, '--json']);
    expect(json.stderr).toBe('');
    expect(json.status).toBe(0);
    const rows = json.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(rows).toEqual([
      expect.objectContaining({
        schema: service,
        group,
        topic,
        partition: 0,
        nextOffset: 2,
        lastRecordId: 'm-1',
        highWatermark: 5,
        lag: 3,
        halted: true,
        haltedReason: 'the record at offset 1 is not m-1',
      }),
      expect.objectContaining({
        partition: 1,
        nextOffset: null,
        highWatermark: 0,
        lag: null,
        halted: false,
      }),
    ]);

    // every schema holding offsets, as a table
    const human = shoal(['offsets', 'list']);
    expect(human.status).toBe(0);
    const line = human.stdout.split('\n').find((l) => l.includes(topic) && l.includes(' 2 '));
    expect(line).toMatch(
      new RegExp(`${service}.*${group}.*│ 0 .*│ 2 .*│ 5 .*│ 3 .*since .*offset 1 is not m-1`),
    );
  });

  it('colours only on a terminal, and not with NO_COLOR or --no-color', () => {
    const ansi = '\u001b[';
    const terminal = { TERM: 'xterm', NO_COLOR: '' };
    expect(shoalOnTerminal(['offsets', 'list'], '', terminal).output).toContain(ansi);
    const noColor = { ...terminal, NO_COLOR: '1' };
    expect(shoalOnTerminal(['offsets', 'list'], '', noColor).output).not.toContain(ansi);
    const flag = ['offsets', 'list', '--no-color'];
    expect(shoalOnTerminal(flag, '', terminal).output).not.toContain(ansi);
    expect(shoal(['offsets', 'list']).stdout).not.toContain(ansi);
  });
});

describe('shoal offsets reset', () => {
  it('moves the offset, clears the halt and the record identity, and writes the audit row', async () => {
    const result = shoal(resetArgs('--to', 'latest', '--actor', 'ops@example', '--yes', '--json'));
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      schema: service,
      fromOffset: 2,
      toOffset: 5,
      halted: true,
      resetId: expect.any(Number),
    });
    expect(await storedRow()).toEqual({
      next_offset: 5,
      last_record_id: null,
      halted_at: null,
      halted_reason: null,
    });
    expect(await resets()).toEqual([
      {
        consumer_group: group,
        topic,
        partition: 0,
        from_offset: 2,
        to_offset: 5,
        actor: 'ops@example',
        reason: 'Kafka data was reset',
      },
    ]);
  });

  it('resolves earliest and a given offset, and records user@host by default', async () => {
    expect(shoal(resetArgs('--to', 'earliest', '--yes')).status).toBe(0);
    expect((await storedRow()).next_offset).toBe(0);
    const result = shoal(resetArgs('--to', '3', '--yes'));
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('next offset 0 -> 3');
    expect((await storedRow()).next_offset).toBe(3);
    expect((await resets()).map((r) => [r.from_offset, r.to_offset, r.actor])).toEqual([
      [2, 0, `${os.userInfo().username}@${os.hostname()}`],
      [0, 3, `${os.userInfo().username}@${os.hostname()}`],
    ]);
  });

  it('refuses without --yes when there is no terminal to ask on (exit 2), changing nothing', async () => {
    const result = shoal(resetArgs('--to', 'latest'));
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--yes is required');
    expect((await storedRow()).next_offset).toBe(2);
    expect((await storedRow()).halted_at).not.toBeNull();
    expect(await resets()).toEqual([]);
  });

  it('on a terminal asks first: no changes nothing, yes resets', async () => {
    const declined = shoalOnTerminal(resetArgs('--to', 'latest'), 'n');
    expect(declined.output).toContain(`partition 0 in schema ${service}: next offset 2 -> 5`);
    expect(declined.output).toContain('[y/N]');
    expect(declined.output).toContain('nothing changed');
    expect(declined.status).toBe(1);
    expect(await storedRow()).toMatchObject({ next_offset: 2, last_record_id: 'm-1' });
    expect(await resets()).toEqual([]);

    const confirmed = shoalOnTerminal(resetArgs('--to', 'latest'), 'y');
    expect(confirmed.status).toBe(0);
    expect(await storedRow()).toMatchObject({ next_offset: 5, halted_at: null });
    expect(await resets()).toHaveLength(1);
  });

  it('--dry-run shows the change and makes none', async () => {
    const result = shoal(resetArgs('--to', 'latest', '--dry-run'));
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(
      `${topic} partition 0 in schema ${service}: next offset 2 -> 5`,
    );
    expect(result.stderr).toContain('dry run: nothing changed');
    expect(await storedRow()).toMatchObject({ next_offset: 2, last_record_id: 'm-1' });
    expect((await storedRow()).halted_at).not.toBeNull();
    expect(await resets()).toEqual([]);
  });

  it('bad usage exits 2 naming the option, and changes nothing', { timeout: 300_000 }, async () => {
    const cases: [string[], string][] = [
      [
        resetArgs('--to', 'soon', '--yes'),
        "option '--to <earliest|latest|offset>' argument 'soon' is invalid",
      ],
      [resetArgs('--to', '6', '--yes'), "--to: 6 is outside the partition's log (offsets 0 to 5)"],
      [
        resetArgs('--to', 'latest', '--yes', '--partition', 'x'),
        "option '--partition <n>' argument 'x' is invalid",
      ],
      [resetArgs('--to', 'latest', '--yes', '--partition', '7'), '--partition: topic'],
      [resetArgs('--to', 'latest', '--yes', '--group', 'nobody'), '--group/--topic/--partition'],
      [
        resetArgs('--to', 'latest', '--yes', '--reason', ' '),
        "option '--reason <text>' argument ' ' is invalid",
      ],
      [
        ['offsets', 'reset', '--service', service, '--to', 'latest'],
        "required option '--group <group>' not specified",
      ],
    ];
    for (const [args, named] of cases) {
      const result = shoal(args);
      expect({ args, status: result.status }).toEqual({ args, status: 2 });
      expect(result.stderr).toContain(named);
    }
    expect(shoal(['offsets']).status).toBe(2);
    expect(await storedRow()).toMatchObject({ next_offset: 2, last_record_id: 'm-1' });
    expect(await resets()).toEqual([]);
  });
});

describe('shoal', () => {
  it('--help at every level, with examples and the exit codes', () => {
    const helps = [['--help'], ['offsets', '--help'], ['offsets', 'reset', '--help']].map((args) =>
      shoal(args),
    );
    for (const help of helps) {
      expect(help.status).toBe(0);
      expect(help.stdout).toContain('Examples:');
    }
    expect(helps[2]!.stdout).toContain('78   bad configuration');
  });

  it('top-level help lists every noun with its description, though a run loads only its own noun', () => {
    // main.ts imports a noun's module only when that noun runs; top-level help still needs them all
    const nouns = {
      offsets: 'consumer offsets:',
      dlq: 'dead letters:',
      regression: 'the regression decision:',
      orphans: 'records whose entity is gone',
      dedup: 'dedup: why reports',
      status: 'services, their lag',
      entities: 'announce, delete, restore',
      import: 'import legacy JSON bug reports',
      rebuild: "rebuild a service's read model",
    };
    const commands = (text: string) =>
      text.slice(text.indexOf('Commands:'), text.indexOf('Examples:')).replace(/\s+/g, ' ');
    // (commander's `help` command exits as a usage error does, 2, as the bin always has)
    const runs = { '--help': 0, help: 2, '--no-color --help': 0, '': 2 };
    for (const [line, status] of Object.entries(runs)) {
      const args = line.split(' ').filter(Boolean);
      const help = shoal(args);
      expect({ args, status: help.status }).toEqual({ args, status });
      const listed = commands(help.stdout + help.stderr);
      for (const [noun, description] of Object.entries(nouns))
        expect(listed).toMatch(
          new RegExp(` ${noun}( \\[options\\])?( [[<][a-z]+[\\]>])? ${description}`),
        );
    }
    const unknown = shoal(['dql', 'list']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'dql'");
    expect(unknown.stderr).toContain('Did you mean dlq?');
    const nounHelp = shoal(['help', 'dlq']);
    expect(nounHelp.stdout + nounHelp.stderr).toContain('Usage: shoal dlq [options] [command]');
  });

  it('a service without offsets, or PostgreSQL down, exits 4; a bad DATABASE_URL 78; the password is never printed', () => {
    const unknown = shoal(['offsets', 'list', '--service', 'No Such-Service']);
    expect(unknown.status).toBe(4);
    expect(unknown.stderr).toContain('no consumer offsets in schema "no_such_service"');

    const down = shoal(['offsets', 'list'], {
      DATABASE_URL: 'postgres://shoal:s3cret-pw@127.0.0.1:1/shoal',
    });
    expect(down.status).toBe(4);
    expect(down.stderr).toContain('ECONNREFUSED');
    expect(down.stderr + down.stdout).not.toContain('s3cret-pw');

    const bad = shoal(['offsets', 'list'], { DATABASE_URL: 'mysql://root:s3cret-pw@db/shoal' });
    expect(bad.status).toBe(78);
    expect(bad.stderr).toContain('DATABASE_URL: expected a postgres or postgresql URL');
    expect(bad.stderr).not.toContain('s3cret-pw');
  });

  it('an interrupt exits 130', async () => {
    // a "PostgreSQL" that accepts and never answers: the command waits on it until interrupted
    let accepted!: () => void;
    const connected = new Promise<void>((resolve) => (accepted = resolve));
    const silent = net.createServer(() => accepted());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as net.AddressInfo;
      const child = spawn(bin, ['offsets', 'list'], {
        cwd: repoRoot,
        env: { ...process.env, DATABASE_URL: `postgres://shoal@127.0.0.1:${port}/shoal` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      await connected;
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(stderr).toContain('interrupted');
    } finally {
      silent.close();
    }
  });
});
