import { readFileSync } from 'node:fs';
import type { Command } from '@commander-js/extra-typings';
import { connectionEnv, loadConfig, z } from '@shoal/config';
import { Codec, createRegistry, topicNames } from '@shoal/contracts';
import { connectionsHelp, kafkaClient } from '../connections.js';
import { exitCodes, exitCodesHelp, UsageError } from '../exit.js';
import { nonEmpty, projectId } from '../options.js';
import { canAsk, confirm, defaultActor, jsonLines, message } from '../terminal.js';
import {
  buildChange,
  entityKinds,
  parseCaseLine,
  verbChanges,
  type Built,
  type EntityCase,
  type Verb,
} from './changes.js';

/**
 * `shoal entities announce|delete|restore|discard <kind> <id>` (or `--file` for many): publishes
 * validated `shoal.entity-changes.v1` records with the actor, the way every service learns of its
 * entities (never a write into their tables). Deleting and discarding ask first on a terminal.
 */

const verbHelp: Record<Verb, { does: string; example: string }> = {
  announce: {
    does: 'announces an entity (change "created"): messages held for it apply',
    example: 'npx shoal entities announce detector 77 --project 1',
  },
  delete: {
    does: 'deletes an entity (change "deleted"): later messages naming it are stale references',
    example: 'npx shoal entities delete project 42 --yes',
  },
  restore: {
    does: 'restores a deleted entity (change "restored")',
    example: 'npx shoal entities restore project 42',
  },
  discard: {
    does: 'deletes a group and tombstones its fingerprints (change "discarded"; groups only)',
    example: 'npx shoal entities discard group 1234 --yes',
  },
};

const destructive = (verb: Verb) => verb === 'delete' || verb === 'discard';

const entitiesHelp = (verb: Verb) => `
Publishes one shoal.entity-changes.v1 record per entity, keyed <kind>:<id>, with change
"${verbChanges[verb]}", occurred_at now and actor (--actor, default user@host), validated against
its schema first. Kinds: ${entityKinds.join(', ')}; detector, group and project ids are whole
numbers, environments (by name) and releases (by version) need --project.${destructive(verb) ? '\nOn a terminal it asks first; elsewhere --yes is required.' : ''}

--file <path|-> takes many, as JSON Lines (- is stdin), one case a line:
  {"kind": "detector", "id": 77, "project_id": 1, "name": "uptime"}
A bad line is reported naming its line and field, the others are still published (exit 3).

Examples:
  ${verbHelp[verb].example}
  npx shoal entities ${verb} --file entities.jsonl --dry-run

${exitCodesHelp}

${connectionsHelp}
  SCHEMA_REGISTRY_URL     the registry the record is framed with
  SHOAL_TOPIC_NAMESPACE   prefix of the topic name (empty)`;

interface Case {
  line?: number;
  built: Built;
  kind: string;
  id: string;
}

function casesOf(
  verb: Verb,
  args: { kind?: string; id?: string },
  options: {
    file?: string;
    project?: number;
    name?: string;
    releasedAt?: string;
    commit?: string[];
    actor: string;
  },
): Case[] {
  if (options.file !== undefined) {
    if (args.kind !== undefined)
      throw new UsageError('give either <kind> <id> or --file, not both');
    const text = readFileSync(options.file === '-' ? 0 : options.file, 'utf8');
    return text.split('\n').flatMap((line, i) => {
      if (line.trim() === '') return [];
      const parsed = parseCaseLine(line);
      if ('problem' in parsed)
        return [{ line: i + 1, kind: '-', id: '-', built: { ok: false, problem: parsed.problem } }];
      return [
        {
          line: i + 1,
          kind: parsed.kind,
          id: parsed.id,
          built: buildChange(verb, parsed, options.actor),
        },
      ];
    });
  }
  if (args.kind === undefined || args.id === undefined)
    throw new UsageError('give <kind> <id>, or --file with one case a line');
  const c: EntityCase = {
    kind: args.kind,
    id: args.id,
    ...(options.project !== undefined && { project_id: options.project }),
    ...(options.name !== undefined && { name: options.name }),
    ...(options.releasedAt !== undefined && { released_at: options.releasedAt }),
    ...(options.commit !== undefined && { commits: options.commit }),
  };
  const built = buildChange(verb, c, options.actor);
  // one case from the arguments: a bad one is bad usage, naming the argument
  if (!built.ok) throw new UsageError(built.problem);
  return [{ kind: c.kind, id: c.id, built }];
}

const where = (c: Case) => (c.line === undefined ? '' : `line ${c.line}: `);

function describe(c: Case, dryRun: boolean): string {
  if (!c.built.ok) return `${where(c)}refused: ${c.built.problem}`;
  const v = c.built.value;
  return `${where(c)}${v.entity_kind} ${v.entity_id}: ${dryRun ? 'would publish' : 'published'} ${v.change} (event ${v.event_id}, actor ${v.actor})`;
}

const caseJson = (c: Case, dryRun: boolean) =>
  c.built.ok
    ? {
        line: c.line,
        action: dryRun ? 'would-publish' : 'publish',
        key: c.built.key,
        value: c.built.value,
      }
    : { line: c.line, action: 'refuse', kind: c.kind, id: c.id, problem: c.built.problem };

function addVerb(entities: ReturnType<typeof entitiesNoun>, verb: Verb): void {
  entities
    .command(verb)
    .description(verbHelp[verb].does)
    .argument('[kind]', `the entity's kind (${entityKinds.join(', ')})`)
    .argument('[id]', "the entity's id (an environment's name, a release's version)")
    .option('--file <path|->', 'many cases, JSON Lines (- is stdin)')
    .option('--project <id>', 'the owning project', projectId)
    .option('--name <name>', "the entity's name", nonEmpty)
    .option('--released-at <iso>', 'releases: when it was made')
    .option('--commit <sha...>', 'releases: the commits it contains')
    .option('--actor <who>', 'who, kept in the record', nonEmpty, defaultActor())
    .option('--dry-run', 'show the records, publish nothing')
    .option('--yes', 'do not ask (required without a terminal to delete or discard)')
    .option('--json', 'JSON Lines: one object per case')
    .addHelpText('after', entitiesHelp(verb))
    .action(async (kind, id, options) => {
      const ask = destructive(verb) && !options.dryRun && !options.yes;
      if (ask && !canAsk())
        throw new UsageError(`--yes is required to ${verb} without a terminal to ask on`);
      const cases = casesOf(verb, { kind, id }, options);
      const config = loadConfig({
        ...connectionEnv,
        SHOAL_TOPIC_NAMESPACE: z.string().default(''),
      });
      const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
      const good = cases.filter((c) => c.built.ok);
      const print = (dryRun: boolean) => {
        process.stdout.write(
          options.json
            ? jsonLines(cases.map((c) => caseJson(c, dryRun)))
            : cases.map((c) => `${describe(c, dryRun)}\n`).join(''),
        );
        if (good.length < cases.length) process.exitCode = exitCodes.refused;
      };
      const summary = `${good.length} ${verbChanges[verb]} change(s) to ${topics.entityChanges}, ${cases.length - good.length} refused`;
      if (options.dryRun || good.length === 0) {
        print(true);
        message(options.dryRun ? `dry run: ${summary}; nothing published` : summary);
        return;
      }
      if (ask && !(await confirm(`Publish ${summary}?`))) {
        message('nothing published');
        process.exitCode = exitCodes.failed;
        return;
      }
      const codec = new Codec(createRegistry(config.SCHEMA_REGISTRY_URL), topics);
      const messages = await Promise.all(
        good.map(async (c) => {
          const built = c.built as Extract<Built, { ok: true }>;
          return { key: built.key, value: await codec.encode('entityChanges', built.value) };
        }),
      );
      const producer = kafkaClient(config.KAFKA_BROKERS).producer({
        idempotent: true,
        maxInFlightRequests: 1,
      });
      await producer.connect();
      try {
        await producer.send({ topic: topics.entityChanges, acks: -1, messages });
      } finally {
        await producer.disconnect();
      }
      print(false);
      message(`published ${summary}`);
    });
}

const entitiesNoun = (program: Command<[], { color: boolean }>) =>
  program
    .command('entities')
    .description(
      'announce, delete, restore or discard detectors, groups, projects, environments, releases',
    )
    .addHelpText(
      'after',
      `
Examples:
  npx shoal entities announce detector 77 --project 1
  npx shoal entities announce --help`,
    );

export function addEntitiesCommand(program: Command<[], { color: boolean }>): void {
  const entities = entitiesNoun(program);
  for (const verb of Object.keys(verbChanges) as Verb[]) addVerb(entities, verb);
}
