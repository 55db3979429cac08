/**
 * Message normalisation: the variable parts of an error message (numbers, ids, hashes, addresses,
 * dates, durations, quoted values after `=`) become placeholders such as `<int>` or `<date>`, so
 * two reports of one incident normalise to the same text. Pure and synchronous: no I/O, no state.
 *
 * What counts as variable follows Sentry's parameterizer (getsentry/sentry,
 * src/sentry/grouping/parameterization.py): Shoal agrees with it on which messages are equal, with
 * three deliberate differences: word boundaries are Unicode (a digit inside `файл2` or `café1` is part
 * of a word, as in `utf8`), `Fee::add()` stays a function name (Sentry takes `Fee::` for IPv6), and
 * a CIDR range (`10.0.0.0/8`, `fc00::/7`) is one `<ip>`.
 */

/**
 * A character that continues a word. The patterns run over an ASCII shadow of the text (below) in
 * which every non-ASCII letter, mark or number is a `z`, so this ASCII class is Unicode's.
 */
const WORD = '[A-Za-z0-9_]';
/** Start and end of a word, by Unicode letters rather than ASCII `\b` (through the shadow). */
const START = String.raw`(?<!${WORD})`;
const END = String.raw`(?!${WORD})`;

const EMAIL_LOCAL = String.raw`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]`;
const MONTH = 'Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec';
const DAY = 'Sun|Mon|Tue|Wed|Thu|Fri|Sat';
const LONG_DAY = 'Sunday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday';
const ZONE = String.raw`(?:[-+]\d{2}[0-5]\d|UTC|UT|GMT|[ECMP][SD]T|[A-IK-Z])`;
const OCTET = String.raw`(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)`;
const IPV4 = String.raw`(?:${OCTET}\.){3}${OCTET}`;
const H16 = '[0-9a-fA-F]{1,4}';
const IPV6 = [
  String.raw`(?:${H16}:){7}${H16}`,
  String.raw`(?:${H16}:){1,4}:${IPV4}`,
  String.raw`::(?:ffff(?::0{1,4})?:)?${IPV4}`,
  String.raw`fe80:(?::${H16}){0,4}%[0-9a-zA-Z]+`,
  String.raw`(?:${H16}:){1,6}:${H16}`,
  String.raw`(?:${H16}:){1,5}(?::${H16}){1,2}`,
  String.raw`(?:${H16}:){1,4}(?::${H16}){1,3}`,
  String.raw`(?:${H16}:){1,3}(?::${H16}){1,4}`,
  String.raw`(?:${H16}:){1,2}(?::${H16}){1,5}`,
  String.raw`${H16}:(?::${H16}){1,6}`,
  String.raw`(?:${H16}:){1,7}:`,
  String.raw`:(?::${H16}){1,7}`,
  '::',
].join('|');

/**
 * Top-level domains a hostname may end in: Sentry's top 100, less those that are also common
 * property or module names (`user.id`, `x.in`, `self.is`, `a.to`, `config.app`, `obj.info`…),
 * so an attribute access is never taken for a host.
 */
const TLDS =
  'com|net|org|jp|de|uk|fr|br|it|ru|es|gov|pl|ca|au|cn|co|nl|edu|eu|ch|cz|mx|tv|se|tr|tw|ua|ir|vn|cl|sk|ly|cc|fi|pt|dk|ar|hu|tk|gr|il|ro|biz|ie|za|nz|sg|ee|th|io|xyz|pe|bg|hk|rs|lt|ph|si|mobi|by|la|ga|xxx|cf|hr|ng|kz|ug|gq|ae|lv|fm|sa|dev|local|internal';

/** Each kind of variable part, in the order they are tried at one position (first wins). */
const PATTERNS: ReadonlyArray<readonly [kind: string, pattern: string]> = [
  // starts only where a run of address characters starts, so a long word is scanned once, not once per letter
  ['email', String.raw`(?<!${EMAIL_LOCAL})${EMAIL_LOCAL}+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*`],
  [
    'url',
    String.raw`${START}[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/$.?#][^\s]*?(?=[.,;:!?)'"\]]*(?:\s|$))`,
  ],
  [
    'traceparent',
    String.raw`${START}(?:00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]|1-[0-9a-f]{8}-[0-9a-f]{24})${END}`,
  ],
  [
    'uuid',
    String.raw`${START}[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}${END}`,
  ],
  [
    'date',
    [
      // RFC 822 / 1123 (and Date.prototype.toUTCString): Mon, 02 Jan 2006 15:04:05 GMT
      String.raw`${START}(?:${DAY}),\s\d{1,2}\s(?:${MONTH})\s\d{2,4}\s\d{1,2}:\d{1,2}(?::\d{1,2})?\s${ZONE}`,
      // RFC 850: Monday, 02-Jan-06 15:04:05 MST
      String.raw`${START}(?:${LONG_DAY}|${DAY}),\s\d{2}-(?:${MONTH})-\d{2}\s\d{2}:\d{2}:\d{2}\s${ZONE}`,
      // Date.prototype.toString(): Mon Jan 02 2006 14:04:05 GMT-0800 (Pacific Standard Time)
      String.raw`${START}(?:${DAY})\s(?:${MONTH})\s\d{2}\s\d{4}\s\d{2}:\d{2}:\d{2}\sGMT[+-]\d{4}(?:\s\([^)]+\))?`,
      // asctime / ctime: Mon Jan  2 15:04:05 2006
      String.raw`${START}(?:(?:${DAY})\s+)?(?:${MONTH})\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}\s+\d{4}`,
      // Jan 02, 2006 / Mon Jan 02, 2006
      String.raw`${START}(?:(?:${DAY})\s)?(?:${MONTH})\s[0-3]?\d,\s\d{2,4}`,
      // ISO 8601 / RFC 3339 date-times, extended or basic, fraction by . or , and an optional zone
      String.raw`\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d(?::?[0-5]\d(?:[.,]\d+)?)?(?:Z?[+-][0-2]\d(?::?[0-5]\d)?|Z\d{2}:\d{2}|Z)?`,
      // ISO 8601 date
      String.raw`${START}\d{4}-[01]\d-[0-3]\d${END}`,
      // clock times: 12-hour with AM/PM, 24-hour, with or without seconds
      String.raw`(?<![0-9:.])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?(?![0-9:])(?:\s?[aApP]\.?[mM]\.?${END})?`,
      // Python's repr of a datetime
      String.raw`${START}datetime\.datetime\([^)]*\)`,
    ].join('|'),
  ],
  // Before hostnames and ints, so that `10.0.0.1` is one address and `fc00::/7` one range
  [
    'ip',
    String.raw`(?<![0-9a-zA-Z_:.])(?:${IPV6})(?:/\d{1,3})?(?![A-Za-z0-9_(:.])|${START}${IPV4}(?:/\d{1,2})?${END}`,
  ],
  [
    'hostname',
    String.raw`${START}(?:[a-zA-Z0-9-]{1,63}\.)+(?:${TLDS}|${TLDS.toUpperCase()})${END}(?!\.[a-zA-Z])`,
  ],
  ['sha1', String.raw`${START}[0-9a-fA-F]{40}${END}`],
  ['md5', String.raw`${START}[0-9a-fA-F]{32}${END}`],
  [
    'duration',
    // Go's and humans' 1h2m3.5s, 250ms, 1.5s (µs is us in the shadow); ISO 8601 PT5M, P1DT2H
    String.raw`${START}(?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h))+${END}|${START}P(?=\d|T\d)(?:\d+[YMWD])*(?:T(?:\d+(?:[.,]\d+)?[HMS])+)?${END}`,
  ],
  [
    'hex',
    [
      String.raw`${START}0[xX][0-9a-fA-F]+${END}`,
      // 8 or more digits are an id, not a quantity (Sentry's rule), signed or not
      String.raw`(?<![A-Za-z0-9_-])-\d{8,}${END}`,
      // without 0x: 8 or more hex digits, one case, with at least one digit
      String.raw`${START}(?=[a-f]*\d)[0-9a-f]{8,128}${END}`,
      String.raw`${START}(?=[A-F]*\d)[0-9A-F]{8,128}${END}`,
    ].join('|'),
  ],
  // a short git sha: 7 lowercase hex characters with both a digit and a letter
  ['git_sha', String.raw`${START}(?=[a-f]*\d)(?=\d*[a-f])[0-9a-f]{7}${END}`],
  ['float', String.raw`(?:${START}|(?<![A-Za-z0-9_-])-)\d+\.\d+${END}`],
  ['int', String.raw`(?:${START}|(?<![A-Za-z0-9_-])-)\d{1,7}${END}`],
  ['quoted_str', String.raw`(?<==)(?:'[^']+'|"[^"]+")`],
  ['bool', String.raw`(?<==)(?:true|True|false|False)${END}`],
];

/**
 * One capturing group for KEPT, then one per kind, in order (the patterns hold no groups of their
 * own). Numbered, not named: a named group's object per match cost half the throughput.
 */
/**
 * Names with a hyphenated number that are not variable parts (Sentry masks `utf-8` as `utf-<int>`
 * and lists that as a known fault): encodings, hash functions, an architecture. Tried first and
 * left as they are.
 */
const KEPT = [
  String.raw`${START}(?:utf|UTF|ucs|UCS)-(?:8|16|32)(?:BE|LE|be|le)?${END}`,
  String.raw`${START}(?:iso|ISO)-\d{4}(?:-\d{1,2})?${END}`,
  String.raw`${START}(?:windows|Windows|cp|CP)-\d{3,4}${END}`,
  String.raw`${START}(?:sha|SHA)-(?:1|224|256|384|512)${END}`,
  String.raw`${START}(?:x86|X86)-64${END}`,
].join('|');

const COMBINED = new RegExp(
  [KEPT, ...PATTERNS.map(([, p]) => p)].map((p) => `(${p})`).join('|'),
  'g',
);
const PLACEHOLDERS = PATTERNS.map(([kind]) => `<${kind}>`);

const NON_ASCII = /[\u0080-\u{10FFFF}]/u;
const EACH_NON_ASCII = /[\u0080-\u{10FFFF}]/gu;
const WORD_CHARACTER = /[\p{L}\p{M}\p{N}]/u;
const SPACE = /\s/u;

/**
 * `text` with the same length in UTF-16 units, in ASCII: each unit of a non-ASCII letter, mark or
 * number becomes `z` (a letter no hex, month or unit has; `µ`: `u`, for `µs`), of a space a space, of anything else `\x01` (a symbol
 * no pattern names). Matching runs on it, replacing on `text`: V8 matches these patterns over a
 * one-byte string ten times faster than over the text with Unicode classes.
 */
function asciiShadow(text: string): string {
  if (!NON_ASCII.test(text)) return text;
  return text.replace(EACH_NON_ASCII, (ch) =>
    (ch === 'µ' ? 'u' : WORD_CHARACTER.test(ch) ? 'z' : SPACE.test(ch) ? ' ' : '\x01').repeat(
      ch.length,
    ),
  );
}

/** `text` with each variable part replaced by `<kind>` and runs of whitespace folded to one space. */
export function normaliseMessage(text: string): string {
  const shadow = asciiShadow(text);
  let out = '';
  let copied = 0;
  COMBINED.lastIndex = 0;
  for (let m = COMBINED.exec(shadow); m !== null; m = COMBINED.exec(shadow)) {
    const group = m.findIndex((value, i) => i > 0 && value !== undefined);
    // group 1 is KEPT: copied as it is with the text around it
    if (group > 1) {
      out += text.slice(copied, m.index) + PLACEHOLDERS[group - 2];
      copied = m.index + m[0].length;
    }
  }
  out += text.slice(copied);
  return out.replace(/\s+/gu, ' ').trim();
}

/**
 * One stack frame as module and function, without line or column numbers: `handler app/x.ts:12`,
 * `at run (/srv/app/x.js:10:5)` and `x.py line 12` lose their numbers; what is left is normalised
 * like a message (a bundle's content hash or a release folder becomes a placeholder).
 */
export function normaliseFrame(frame: string): string {
  const withoutLines = frame
    .replace(/:\d+(?::\d+)?(?=\)|\s|$)/gu, '')
    .replace(/,?\s+line\s+\d+/giu, '');
  return normaliseMessage(withoutLines);
}
