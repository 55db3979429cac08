import { loadSchema, type TopicKey } from '@shoal/contracts';

/**
 * Extreme values for every numeric and string field of a topic's schema (found by walking the JSON
 * Schema in `schemas/`, so a new field is covered without touching a test), each set in a copy of a
 * valid message, one field at a time.
 */

export interface Leaf {
  /** JSON pointer of the field, e.g. `/shoal/detector_id` or `/fingerprint/0`. */
  pointer: string;
  integer: boolean;
  number: boolean;
  string: boolean;
}

export interface Variant {
  pointer: string;
  /** What was put there, for failure messages. */
  label: string;
  value: unknown;
  /** The message: the base with `value` at `pointer`. */
  message: Record<string, unknown>;
  /** An integer JavaScript cannot hold exactly at an integer-typed field: must be refused. */
  unsafeInteger: boolean;
}

type Schema = Record<string, unknown>;

const typesOf = (schema: Schema): unknown[] =>
  Array.isArray(schema.type) ? schema.type : schema.type === undefined ? [] : [schema.type];

/** Every integer-, number- or string-typed location reachable through `properties` and `items`. */
export function leavesOf(schema: Schema, pointer = ''): Leaf[] {
  const leaves: Leaf[] = [];
  const types = typesOf(schema);
  const string = types.includes('string') || typeof schema.const === 'string';
  if (pointer && (string || types.includes('integer') || types.includes('number')))
    leaves.push({
      pointer,
      integer: types.includes('integer'),
      number: types.includes('number'),
      string,
    });
  for (const [name, sub] of Object.entries((schema.properties ?? {}) as Record<string, Schema>))
    leaves.push(...leavesOf(sub, `${pointer}/${name.replaceAll('~', '~0').replaceAll('/', '~1')}`));
  if (schema.items && typeof schema.items === 'object' && !Array.isArray(schema.items))
    leaves.push(...leavesOf(schema.items as Schema, `${pointer}/0`));
  return leaves;
}

/** 100 KB no compressor can shrink much (PostgreSQL compresses before a value meets an index limit). */
export function incompressible(bytes = 100 * 1024): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let state = 0x2545f491;
  let text = '';
  for (let i = 0; i < bytes; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    text += alphabet[(state >>> 0) % alphabet.length];
  }
  return text;
}

const big = incompressible();

export const extremeNumbers: [string, number][] = [
  ['0', 0],
  ['-1', -1],
  ['1', 1],
  ['1.5', 1.5],
  ['2^53 − 1', Number.MAX_SAFE_INTEGER],
  ['−(2^53 − 1)', -Number.MAX_SAFE_INTEGER],
  // what JSON.parse makes of 9007199254740993: already rounded, so it must be refused
  ['2^53 + 1', JSON.parse('9007199254740993') as number],
  ['−(2^53 + 1)', JSON.parse('-9007199254740993') as number],
  ['2^63', 2 ** 63],
  ['1e308', 1e308],
  ['−1e308', -1e308],
  ['5e-324', Number.MIN_VALUE],
];

export const extremeStrings: [string, string][] = [
  ['empty', ''],
  ['100 KB', big],
  ['NUL', '\u0000'],
  ['NUL inside', 'a\u0000b'],
  ['lone high surrogate', '\ud800'],
  ['lone low surrogate', 'x\udc00'],
  ['emoji', '🦈 shoal 👩‍👩‍👧'],
  ['right-to-left', 'مرحبا \u202Eevil\u202C שלום'],
  ['combining', 'e\u0301\u0308'],
  ['whitespace', ' \n\t\r '],
  ['quotes and backslash', '"\'\\%_'],
];

function setAt(target: Record<string, unknown>, pointer: string, value: unknown): void {
  const path = pointer
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
  let node: Record<string, unknown> = target;
  path.forEach((segment, i) => {
    if (i === path.length - 1) {
      node[segment] = value;
      return;
    }
    node[segment] ??= /^\d+$/.test(path[i + 1]!) ? [] : {};
    node = node[segment] as Record<string, unknown>;
  });
}

/**
 * For each field of `key`'s schema, a copy of `base(n)` (n numbers the variants, so each can be made
 * unique) with each extreme value of the field's type at the field.
 */
export function extremeVariants(key: TopicKey, base: (n: number) => object): Variant[] {
  const variants: Variant[] = [];
  for (const leaf of leavesOf(loadSchema(key))) {
    const values: [string, unknown][] = [
      ...(leaf.integer || leaf.number ? extremeNumbers : []),
      ...(leaf.string ? extremeStrings : []),
    ];
    for (const [label, value] of values) {
      const message = base(variants.length) as Record<string, unknown>;
      setAt(message, leaf.pointer, value);
      variants.push({
        pointer: leaf.pointer,
        label,
        value,
        message,
        unsafeInteger:
          leaf.integer && Number.isInteger(value) && !Number.isSafeInteger(value as number),
      });
    }
  }
  return variants;
}
