/**
 * The fuzz run's messages: the bytes sent, on which topic and key, and what must become of each.
 * The kinds every consumer faces come from here: random bytes, empty and null values, a frame that
 * is not JSON, a foreign schema id, every payload mutation its topic's JSON schema refuses, integers
 * the schema accepts but JavaScript cannot hold, and extreme strings in every string field. A
 * target (one consumer) supplies valid payloads and what only it knows: which extreme values it can
 * store, and which references are stale. Every case is checked against the local schema when it is
 * made, so a case said to be refused by the schema is refused, and one said to pass it passes.
 */
import { randomBytes } from 'node:crypto';
import { loadSchema, problemsOf, type ReasonCode, type TopicKey } from '@shoal/contracts';
import type { EntityKind } from '@shoal/kafka-runtime';

/** What must become of a message: applied once, or dead-lettered once with this reason. */
export type Outcome = { applied: true } | { reason: ReasonCode; entity?: EntityKind };
export const APPLIED: Outcome = { applied: true };
export const deadLettered = (reason: ReasonCode, entity?: EntityKind): Outcome =>
  entity ? { reason, entity } : { reason };
export const outcomeText = (o: Outcome) =>
  'applied' in o ? 'applied' : `${o.reason}${o.entity ? `(${o.entity})` : ''}`;

/** Header every fuzz message carries (dead-letter records keep the original's headers). */
export const CASE_HEADER = 'shoal.fuzz.case';

export type Payload = Record<string, unknown>;

/** A payload a consumer would apply as it is, on the key it belongs to. */
export interface Sample {
  topic: TopicKey;
  key: string;
  payload: Payload;
  headers?: Record<string, string>;
}

export interface FuzzCase {
  id: string;
  kind: string;
  topic: TopicKey;
  key: string;
  value: Buffer | null;
  headers: Record<string, string>;
  expect: Outcome;
  /** The decoded payload, for cases the target accounts for when applied. */
  payload?: Payload;
}

/** A kind of message: `make(i)` gives its i-th instance (fresh ids each time). */
export interface Kind {
  name: string;
  topic: TopicKey;
  make(i: number): Omit<FuzzCase, 'id' | 'kind' | 'topic'>;
}

export type StringVariant = 'nul' | 'long' | 'unicode';
const LONG_STRING_BYTES = 32 * 1024;
/** An extreme string of each variant, unique per call (two cases never name the same fingerprint). */
const extremeString = (variant: StringVariant): string => {
  const unique = randomBytes(6).toString('hex');
  return variant === 'nul'
    ? `a\u0000b-${unique}`
    : variant === 'unicode'
      ? `\u{1F4A5}\ud800\u202e\u00e9-${unique}`
      : randomBytes((LONG_STRING_BYTES * 3) / 4).toString('base64url');
};

/** Integers a JSON schema's `integer` accepts that a JavaScript number cannot hold exactly. */
const UNSAFE_INTEGERS = ['9007199254740993', '-9007199254740993', '123456789012345678901234567890'];

/** What a target knows about its own topics, for the generic kinds. */
export interface CaseSource {
  /** The i-th valid payload of `topic` (fresh ids), applied as it is when sent alone. */
  valid(topic: TopicKey, i: number): Sample;
  /** What becomes of `valid(topic, i)` with an extreme string at `path`. */
  stringOutcome(topic: TopicKey, path: string, variant: StringVariant): Outcome;
  /** The topic's registered schema id (framing). */
  schemaId(topic: TopicKey): number;
}

interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: boolean;
  items?: SchemaNode;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  format?: string;
  minimum?: number;
  minLength?: number;
  minItems?: number;
}

interface Field {
  /** JSON pointer, e.g. `/shoal/detector_id`, `/fingerprint/0`. */
  path: string;
  schema: SchemaNode;
  required: boolean;
}

/** Every property of a schema, nested objects and array items included. */
function fieldsOf(node: SchemaNode, at = ''): Field[] {
  const fields: Field[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const path = `${at}/${name}`;
    fields.push({ path, schema: child, required: node.required?.includes(name) ?? false });
    fields.push(...fieldsOf(child, path));
    if (child.items) {
      fields.push({ path: `${path}/0`, schema: child.items, required: false });
      fields.push(...fieldsOf(child.items, `${path}/0`));
    }
  }
  return fields;
}

const typesOf = (node: SchemaNode) =>
  node.type === undefined ? [] : Array.isArray(node.type) ? node.type : [node.type];

/** `payload` with `value` at `path` (parents created), or the field removed when value is undefined. */
/** A setter of one field, for `extremeKind`'s edits. */
export const setField = (path: string, value: unknown) => (p: Payload) => withField(p, path, value);

/**
 * A target's kind of message: its valid payload with one edit (an in-range extreme, or a
 * reference), and the outcome that edit must have.
 */
export const extremeKind =
  (valid: (topic: TopicKey, i: number) => Sample) =>
  (topic: TopicKey, name: string, edit: (p: Payload) => Payload, outcome: Outcome): Kind => ({
    name,
    topic,
    make: (i) => {
      const sample = valid(topic, i);
      const payload = edit(sample.payload);
      return {
        key: sample.key,
        value: Buffer.from(JSON.stringify(payload)),
        headers: sample.headers ?? {},
        expect: outcome,
        payload,
      };
    },
  });

export function withField(payload: Payload, path: string, value: unknown): Payload {
  const copy = structuredClone(payload);
  const segments = path.split('/').slice(1);
  let parent: Record<string, unknown> = copy;
  for (const [i, segment] of segments.slice(0, -1).entries()) {
    if (typeof parent[segment] !== 'object' || parent[segment] === null)
      parent[segment] = /^\d+$/.test(segments[i + 1]!) ? [] : {};
    parent = parent[segment] as Record<string, unknown>;
  }
  const last = segments.at(-1)!;
  if (value === undefined) delete parent[last];
  else parent[last] = value;
  return copy;
}

/** The JSON text of `payload` with the literal number `literal` at `path` (beyond what JSON.stringify can write). */
function withLiteral(payload: Payload, path: string, literal: string): string {
  const sentinel = `__fuzz_literal_${randomBytes(6).toString('hex')}__`;
  return JSON.stringify(withField(payload, path, sentinel)).replace(`"${sentinel}"`, literal);
}

const MAGIC_BYTE = 0;
/** The Confluent wire format: magic byte, 4-byte schema id, the JSON. */
function framed(schemaId: number, json: string | Buffer): Buffer {
  const frame = Buffer.alloc(5);
  frame.writeUInt8(MAGIC_BYTE, 0);
  frame.writeUInt32BE(schemaId, 1);
  return Buffer.concat([frame, Buffer.isBuffer(json) ? json : Buffer.from(json)]);
}

/** What the runtime's decoder makes of arbitrary bytes: framed or not JSON is a decode error, JSON not fitting is schema-invalid. */
function randomBytesOutcome(bytes: Buffer): Outcome {
  if (bytes[0] === MAGIC_BYTE && bytes.length > 5) return deadLettered('decode_error');
  try {
    JSON.parse(bytes.toString('utf8'));
    return deadLettered('schema_invalid');
  } catch {
    return deadLettered('decode_error');
  }
}

/** Values `field` refuses, each with a name; checked against the schema below. */
function refusedValues(field: Field): [string, unknown][] {
  const s = field.schema;
  const refused: [string, unknown][] = [];
  if (field.required) refused.push(['missing', undefined]);
  const types = typesOf(s);
  if (types.length) {
    const wrong = [12.5, 'x', true, [], {}].find(
      (v) =>
        !types.some((t) =>
          t === 'array'
            ? Array.isArray(v)
            : t === 'object'
              ? typeof v === 'object' && !Array.isArray(v)
              : t === 'integer'
                ? Number.isInteger(v)
                : t === 'number'
                  ? typeof v === 'number'
                  : typeof v === t,
        ),
    );
    if (wrong !== undefined) refused.push(['wrong type', wrong]);
  }
  if (s.enum || s.const !== undefined) refused.push(['not in enum', 'fuzz-not-in-enum']);
  if (s.pattern) refused.push(['pattern', 'fuzz!']);
  if (s.minLength) refused.push(['empty', '']);
  if (s.minItems) refused.push(['no items', []]);
  if (s.minimum !== undefined) refused.push(['below minimum', s.minimum - 1]);
  if (s.additionalProperties === false) refused.push(['extra property', 'EXTRA']);
  return refused;
}

/** The kinds every consumer of `topics` faces. */
export function genericKinds(topics: TopicKey[], source: CaseSource): Kind[] {
  const kinds: Kind[] = [];
  const json = (p: Payload) => JSON.stringify(p);
  for (const topic of topics) {
    const badKey = (i: number) => `fuzz-${topic}-${i}`;
    kinds.push(
      {
        name: 'random bytes',
        topic,
        make: (i) => {
          const value = randomBytes(1 + (i % 200));
          return { key: badKey(i), value, headers: {}, expect: randomBytesOutcome(value) };
        },
      },
      {
        name: 'empty value',
        topic,
        make: (i) => ({
          key: badKey(i),
          value: Buffer.alloc(0),
          headers: {},
          expect: deadLettered('decode_error'),
        }),
      },
      {
        name: 'null value',
        topic,
        make: (i) => ({
          key: badKey(i),
          value: null,
          headers: {},
          expect: deadLettered('decode_error'),
        }),
      },
      {
        name: 'not JSON after the frame',
        topic,
        make: (i) => ({
          key: badKey(i),
          value: framed(source.schemaId(topic), '{"truncated": '),
          headers: {},
          expect: deadLettered('decode_error'),
        }),
      },
    );
    // a payload valid on another topic, framed with that topic's schema id
    for (const other of topics.filter((t) => t !== topic)) {
      kinds.push({
        name: `foreign schema id (${other})`,
        topic,
        make: (i) => {
          const sample = source.valid(other, i);
          return {
            key: badKey(i),
            value: framed(source.schemaId(other), json(sample.payload)),
            headers: sample.headers ?? {},
            expect: deadLettered('decode_error'),
          };
        },
      });
    }

    const schema = loadSchema(topic) as SchemaNode;
    // the root itself: only its closedness (an extra top-level property)
    const root: Field = {
      path: '',
      schema: { additionalProperties: schema.additionalProperties },
      required: false,
    };
    const fields = [root, ...fieldsOf(schema)];
    const probe = source.valid(topic, 0).payload;
    // a refusal is named for its field only when the valid payload has the field's parent
    const hasParent = (path: string) => {
      let node: unknown = probe;
      for (const segment of path.split('/').slice(1, -1)) {
        if (typeof node !== 'object' || node === null) return false;
        node = (node as Record<string, unknown>)[segment];
      }
      return typeof node === 'object' && node !== null;
    };
    const mutation = (name: string, at: string, make: (base: Payload) => Payload) =>
      hasParent(at) && problemsOf(topic, make(probe)).length > 0 ? name : undefined;
    for (const field of fields) {
      for (const [what, value] of refusedValues(field)) {
        const at = what === 'extra property' ? `${field.path}/fuzz_extra` : field.path;
        const mutate = (base: Payload) =>
          withField(base, at, what === 'extra property' ? 'EXTRA' : value);
        const name = mutation(`schema-invalid ${field.path}: ${what}`, at, mutate);
        if (!name) continue; // the valid payload lacks the field's parent: not a refusal
        kinds.push({
          name,
          topic,
          make: (i) => {
            const sample = source.valid(topic, i);
            const payload = mutate(sample.payload);
            return {
              key: sample.key,
              value:
                i % 2 ? framed(source.schemaId(topic), json(payload)) : Buffer.from(json(payload)),
              headers: sample.headers ?? {},
              expect: deadLettered('schema_invalid'),
            };
          },
        });
      }
      const types = typesOf(field.schema);
      if (types.includes('integer') && !field.schema.enum) {
        for (const literal of UNSAFE_INTEGERS) {
          const accepted = problemsOf(topic, JSON.parse(withLiteral(probe, field.path, literal)));
          if (accepted.length) continue; // refused by the schema already (e.g. below its minimum)
          kinds.push({
            name: `unsafe integer ${field.path}=${literal}`,
            topic,
            make: (i) => {
              const sample = source.valid(topic, i);
              return {
                key: sample.key,
                value: framed(
                  source.schemaId(topic),
                  withLiteral(sample.payload, field.path, literal),
                ),
                headers: sample.headers ?? {},
                expect: deadLettered('schema_invalid'),
              };
            },
          });
        }
      }
      const plainString =
        types.includes('string') &&
        !field.schema.enum &&
        !field.schema.pattern &&
        !field.schema.format;
      if (plainString && problemsOf(topic, withField(probe, field.path, 'x')).length === 0) {
        for (const variant of ['nul', 'long', 'unicode'] as const) {
          kinds.push({
            name: `extreme string ${field.path}: ${variant}`,
            topic,
            make: (i) => {
              const sample = source.valid(topic, i);
              const payload = withField(sample.payload, field.path, extremeString(variant));
              return {
                key: sample.key,
                value: framed(source.schemaId(topic), json(payload)),
                headers: sample.headers ?? {},
                expect: source.stringOutcome(topic, field.path, variant),
                payload,
              };
            },
          });
        }
      }
    }
  }
  return kinds;
}
