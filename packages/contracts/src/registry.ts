import { createRequire } from 'node:module';
import type * as RegistryModule from '@kafkajs/confluent-schema-registry';
import type {
  COMPATIBILITY as COMPATIBILITY_LEVELS,
  SchemaRegistry,
  SchemaType,
} from '@kafkajs/confluent-schema-registry';
import type { RegistryAuth, RegistryConnection } from '@shoal/config/connections';
import type { ValidateFunction } from 'ajv';
import { ContractError } from './errors.js';
import type { MessageTypes } from './messages.js';
import { loadSchema, topicKeys, valueSubject, type TopicKey } from './topics.js';
import { compileJsonSchema, fieldProblems, problemsOf } from './validation.js';

// The registry client (CommonJS: avsc, protobufjs, its own Ajv; ~150 modules) is loaded when the
// first one is created rather than with this package, which most of its importers (the shoal bin's
// commands, tests) load for the topics or the message types only. Its enums, as their values:
const require = createRequire(import.meta.url);
const JSON_SCHEMA = 'JSON' as SchemaType.JSON;
export const COMPATIBILITY = 'BACKWARD' as COMPATIBILITY_LEVELS.BACKWARD;

/** The registry client; `auth` is HTTP basic auth (SCHEMA_REGISTRY_USERNAME / _PASSWORD). */
export function createRegistry(url: string, auth?: RegistryAuth): SchemaRegistry {
  const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry') as typeof RegistryModule;
  return new SchemaRegistry(
    {
      host: url,
      retry: { retries: 2 },
      ...(auth && { auth: { username: auth.username, password: auth.password } }),
    },
    {
      [JSON_SCHEMA]: {
        // a fresh Ajv per compiled schema: versions of one subject share an $id
        ajvInstance: {
          addSchema: () => undefined,
          compile: (schema: object) => compileJsonSchema(schema),
        } as never,
        detailedErrorPaths: true,
      },
    },
  );
}

/** `/readyz`'s registry check: it answers `GET /subjects` (with its basic auth) within 2 s. */
export async function checkRegistry({ url, auth }: RegistryConnection): Promise<void> {
  const response = await fetch(`${url}/subjects`, {
    signal: AbortSignal.timeout(2000),
    ...(auth && {
      headers: {
        authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`,
      },
    }),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

const jsonSchemaOf = (key: TopicKey) => ({
  type: JSON_SCHEMA,
  schema: JSON.stringify(loadSchema(key)),
});

export interface RegisteredSchema {
  key: TopicKey;
  subject: string;
  id: number;
}

/** Registers the schema of each topic under `<topic>-value` with BACKWARD compatibility. */
export async function registerSchemas(
  registry: SchemaRegistry,
  topics: Record<TopicKey, string>,
  keys: TopicKey[] = topicKeys,
): Promise<RegisteredSchema[]> {
  const results: RegisteredSchema[] = [];
  for (const key of keys) {
    const subject = valueSubject(topics[key]);
    const { id } = await registry.register(jsonSchemaOf(key), {
      subject,
      compatibility: COMPATIBILITY,
    });
    results.push({ key, subject, id });
  }
  return results;
}

export interface CompatibilityReport {
  key: TopicKey;
  subject: string;
  state: 'new' | 'unchanged' | 'compatible' | 'breaking';
  messages: string[];
}

interface RegistryApi {
  Subject: {
    compatible(args: {
      subject: string;
      version: string;
      body: object;
    }): Promise<{ data(): { is_compatible: boolean; messages?: string[] } }>;
    registered(args: { subject: string; body: object }): Promise<{ data(): { id: number } }>;
  };
}

/** The registry client's resources the Codec calls directly (the client has no method for them). */
interface CodecApi {
  Schema: { find(args: { id: number }): Promise<{ data(): { schema: string } }> };
  Subject: RegistryApi['Subject'];
}

const statusOf = (error: unknown) => (error as { status?: number } | null)?.status;

/**
 * For each local schema: is it new to the registry, already registered, or (against the latest
 * registered version, under the subject's BACKWARD rule) compatible or breaking.
 */
export async function checkSchemas(
  registry: SchemaRegistry,
  topics: Record<TopicKey, string>,
  keys: TopicKey[] = topicKeys,
): Promise<CompatibilityReport[]> {
  const api = (registry as unknown as { api: RegistryApi }).api;
  const reports: CompatibilityReport[] = [];
  for (const key of keys) {
    const subject = valueSubject(topics[key]);
    const body = { schemaType: JSON_SCHEMA, schema: JSON.stringify(loadSchema(key)) };
    try {
      await registry.getLatestSchemaId(subject);
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
      reports.push({ key, subject, state: 'new', messages: [] });
      continue;
    }
    try {
      await api.Subject.registered({ subject, body });
      reports.push({ key, subject, state: 'unchanged', messages: [] });
      continue;
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
    const result = (await api.Subject.compatible({ subject, version: 'latest', body })).data();
    reports.push({
      key,
      subject,
      state: result.is_compatible ? 'compatible' : 'breaking',
      messages: result.messages ?? [],
    });
  }
  return reports;
}

const MAGIC_BYTE = 0;
const FRAME_HEADER = 5;
const LATEST_ID_TTL_MS = 30_000;
/** How long a schema id found under other subjects only is believed not to be under the topic's. */
const FOREIGN_ID_TTL_MS = 30_000;

interface FetchedSchema {
  text: string;
  validate: ValidateFunction;
}

/**
 * Encodes and decodes one namespace's topics with the Confluent wire format (magic byte 0, 4-byte
 * schema id, JSON) through the registry. Unframed JSON (as Sentry's producers send) is validated
 * against the latest schema registered for the topic. A framed record's schema id must be registered
 * under the topic's subject (`<topic>-value`): one framed with another topic's schema is a
 * `decode_error` naming the id and the subject, never decoded with the wrong schema. Permanent
 * problems throw ContractError with the reason code; the registry being unreachable throws its own
 * (transient) error unchanged.
 */
export class Codec {
  private readonly idsForEncode = new Map<TopicKey, Promise<number>>();
  private readonly schemasById = new Map<number, Promise<FetchedSchema>>();
  /** Per subject and schema id: is the id registered under the subject, and when was that asked. */
  private readonly subjectIds = new Map<
    string,
    Map<number, { under: Promise<boolean>; askedAt: number }>
  >();
  private readonly latestIdBySubject = new Map<string, { id: Promise<number>; at: number }>();

  constructor(
    readonly registry: SchemaRegistry,
    readonly topics: Record<TopicKey, string>,
  ) {}

  /** The registry id of the local schema version (it must have been registered); asked once. */
  private schemaIdFor(key: TopicKey): Promise<number> {
    let id = this.idsForEncode.get(key);
    if (!id) {
      id = this.registry
        .getRegistryIdBySchema(valueSubject(this.topics[key]), jsonSchemaOf(key))
        .then(async (found) => {
          // warm the client's schema cache once: concurrent encodes on a cold cache would each
          // fetch and compile the schema (12,000 parallel encodes took minutes)
          await this.registry.getSchema(found);
          return found;
        });
      id.catch(() => this.idsForEncode.delete(key));
      this.idsForEncode.set(key, id);
    }
    return id;
  }

  /**
   * `validated`: the caller validated `value` against this topic's local schema already (the runtime
   * does when an event is emitted), so it is not validated again.
   */
  async encode<K extends TopicKey>(
    key: K,
    value: MessageTypes[K],
    options: { validated?: boolean } = {},
  ): Promise<Buffer> {
    const problems = options.validated ? [] : problemsOf(key, value);
    if (problems.length)
      throw new ContractError('schema_invalid', `invalid ${key} payload`, problems);
    // validated once, against the same schema text the registry holds under this id
    const frame = Buffer.alloc(FRAME_HEADER);
    frame.writeUInt8(MAGIC_BYTE, 0);
    frame.writeUInt32BE(await this.schemaIdFor(key), 1);
    return Buffer.concat([frame, Buffer.from(JSON.stringify(value))]);
  }

  private schemaFor(schemaId: number): Promise<FetchedSchema> {
    let schema = this.schemasById.get(schemaId);
    if (!schema) {
      schema = (this.registry as unknown as { api: CodecApi }).api.Schema.find({
        id: schemaId,
      }).then(
        (response) => {
          const text = response.data().schema;
          return { text, validate: compileJsonSchema(JSON.parse(text) as object) };
        },
        (error: unknown) => {
          if (statusOf(error) === 404)
            throw new ContractError('decode_error', `unknown schema id ${schemaId}`);
          throw error;
        },
      );
      schema.catch(() => this.schemasById.delete(schemaId));
      this.schemasById.set(schemaId, schema);
    }
    return schema;
  }

  /**
   * Whether `schemaId` is registered under `subject`: the registry is asked whether the id's schema
   * text is one of the subject's versions (ids name content, so one id may serve several subjects, as
   * on Apicurio 3 and Confluent). A yes is kept for good (ids are immutable); a no is asked again
   * after a while, in case the schema was registered under the subject since.
   */
  private async isUnderSubject(
    subject: string,
    schemaId: number,
    schema: FetchedSchema,
  ): Promise<boolean> {
    let ids = this.subjectIds.get(subject);
    if (!ids) this.subjectIds.set(subject, (ids = new Map()));
    const cached = ids.get(schemaId);
    if (cached) {
      const under = await cached.under;
      if (under || Date.now() - cached.askedAt < FOREIGN_ID_TTL_MS) return under;
    }
    const api = (this.registry as unknown as { api: CodecApi }).api;
    const under = api.Subject.registered({
      subject,
      body: { schemaType: JSON_SCHEMA, schema: schema.text },
    }).then(
      () => true,
      (error: unknown) => {
        if (statusOf(error) !== 404) throw error;
        return false;
      },
    );
    under.catch(() => ids.delete(schemaId));
    ids.set(schemaId, { under, askedAt: Date.now() });
    return under;
  }

  private latestIdFor(subject: string): Promise<number> {
    const cached = this.latestIdBySubject.get(subject);
    if (cached && Date.now() - cached.at < LATEST_ID_TTL_MS) return cached.id;
    const id = this.registry.getLatestSchemaId(subject).catch((error: unknown) => {
      this.latestIdBySubject.delete(subject);
      if (statusOf(error) === 404)
        throw new ContractError('decode_error', `no schema registered for ${subject}`);
      throw error;
    });
    this.latestIdBySubject.set(subject, { id, at: Date.now() });
    return id;
  }

  async decode<K extends TopicKey>(key: K, bytes: Buffer | null): Promise<MessageTypes[K]> {
    if (!bytes || bytes.length === 0)
      throw new ContractError('decode_error', 'empty message value');
    const subject = valueSubject(this.topics[key]);
    const framed = bytes[0] === MAGIC_BYTE && bytes.length > FRAME_HEADER;
    const schemaId = framed ? bytes.readUInt32BE(1) : await this.latestIdFor(subject);
    const body = framed ? bytes.subarray(FRAME_HEADER) : bytes;
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch (error) {
      throw new ContractError(
        'decode_error',
        `not JSON${framed ? ` after the schema-${schemaId} frame` : ''}: ${(error as Error).message}`,
      );
    }
    const schema = await this.schemaFor(schemaId);
    if (framed && !(await this.isUnderSubject(subject, schemaId, schema)))
      throw new ContractError(
        'decode_error',
        `schema id ${schemaId} is not registered under subject ${subject}: the record was framed for another topic`,
      );
    const { validate } = schema;
    if (!validate(value)) {
      throw new ContractError(
        'schema_invalid',
        `invalid ${key} payload (schema id ${schemaId})`,
        fieldProblems(validate.errors),
      );
    }
    return value as MessageTypes[K];
  }
}
