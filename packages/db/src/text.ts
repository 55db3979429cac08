import pg from 'pg';

/**
 * Strings as PostgreSQL can store them. A `text` (or `jsonb`) value cannot hold U+0000, which JSON and
 * every schema string allow: Shoal stores it as the six characters `\u0000` (its JSON escape), the same
 * everywhere, so a value with NUL is stored, and compares equal to itself, instead of failing its
 * transaction (SQLSTATE 22021 / 22P05). A lone UTF-16 surrogate needs nothing here: the client encodes
 * it as U+FFFD, as for any text. Whole documents that must come back exactly go in `json` columns.
 */
export const storableText = <S extends string | null | undefined>(value: S): S =>
  (typeof value === 'string' ? value.replaceAll('\u0000', '\\u0000') : value) as S;

/**
 * A value written into SQL text, for a statement sent without parameters so that it shares a round
 * trip with another (`withTransaction`'s `first`, a savepoint and the statement after it): strings and
 * string arrays quoted by `pg.escapeLiteral` (an array as its text form; cast it), whole numbers as
 * digits. A string holding U+0000 cannot be written (the protocol ends the query text there):
 * undefined, and the caller sends parameters instead.
 */
export function sqlLiteral(value: string | number | string[]): string | undefined {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Error(`sqlLiteral: ${value} is not a whole number`);
    return String(value);
  }
  const text = Array.isArray(value)
    ? `{${value.map((s) => `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`).join(',')}}`
    : value;
  return text.includes('\u0000') ? undefined : pg.escapeLiteral(text);
}
