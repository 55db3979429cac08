/**
 * Strings as PostgreSQL can store them. A `text` (or `jsonb`) value cannot hold U+0000, which JSON and
 * every schema string allow: Shoal stores it as the six characters `\u0000` (its JSON escape), the same
 * everywhere, so a value with NUL is stored, and compares equal to itself, instead of failing its
 * transaction (SQLSTATE 22021 / 22P05). A lone UTF-16 surrogate needs nothing here: the client encodes
 * it as U+FFFD, as for any text. Whole documents that must come back exactly go in `json` columns.
 */
export const storableText = <S extends string | null | undefined>(value: S): S =>
  (typeof value === 'string' ? value.replaceAll('\u0000', '\\u0000') : value) as S;
