import { describe, expect, it } from 'vitest';
import { normaliseFrame, normaliseMessage } from '../src/index.js';

// [case, input, expected]: after Sentry's parameterization tests (getsentry/sentry,
// tests/sentry/grouping/test_parameterization.py), in Shoal's own words where they differ
const placeholders: ReadonlyArray<readonly [string, string, string]> = [
  ['email', 'maisey@dogsaregreat.com', '<email>'],
  ['email with plus and period', 'maisey.the+dog@dogsaregreat.com', '<email>'],
  ['email, Unicode local part', 'jürgen@example.de', '<email>'],
  [
    'url with path and query',
    'http://dogsaregreat.com/adopt/shop.js?command=sit&trick=spin',
    '<url>',
  ],
  ['url with credentials and port', 'http://charlie:s3cret@dogsaregreat.com:10', '<url>'],
  ['url, any scheme', 'postgres://app:pw@db.internal:5432/shoal', '<url>'],
  ['url, ipv6 with port', 'http://[2001:db8::1]:80', '<url>'],
  ['url keeps sentence punctuation out', 'see https://x.io/a).', 'see <url>).'],
  ['hostname', 'dogs.squirrelchasers.net', '<hostname>'],
  ['hostname, upper case', 'API.EXAMPLE.COM', '<hostname>'],
  ['ipv4', '11.21.12.31', '<ip>'],
  ['ipv4 with port', '0.0.0.0:80', '<ip>:<int>'],
  ['ipv4 range (CIDR)', '10.0.0.0/8', '<ip>'],
  ['ipv4 range (from-to)', '10.0.0.1-10.0.0.255', '<ip>-<ip>'],
  ['ipv6 unspecified', '::', '<ip>'],
  ['ipv6 loopback', '::1', '<ip>'],
  ['ipv6 range (CIDR)', 'fc00::/7', '<ip>'],
  ['ipv6 compressed', '2012:d157::cbe:908:2013', '<ip>'],
  ['ipv4 mapped to ipv6', '::ffff:192.168.1.1', '<ip>'],
  ['ipv6 full', '1121:0c03:1231:130d:0000:16da:0908:da07', '<ip>'],
  ['ipv6 bracketed with port', '[2001:db8::1]:443', '[<ip>]:<int>'],
  [
    'traceparent header',
    'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    'traceparent: <traceparent>',
  ],
  ['traceparent, AWS', '1-67891233-abcdef012345678912345678', '<traceparent>'],
  ['uuid', '7c1811ed-e98f-4c9c-a9f9-58c757ff494f', '<uuid>'],
  [
    'uuids',
    'bea691f2-2e25-4bec-6838-e0c44b03d60a/7c1811ed-e98f-4c9c-a9f9-58c757ff494f',
    '<uuid>/<uuid>',
  ],
  ['sha1 / git sha', '5fc35719b9cf96ec602dbc748ff31c587a46961d', '<sha1>'],
  ['md5', '0751007cd28df267e8e051b51f918c60', '<md5>'],
  ['short git sha', 'commit a93c7d2', 'commit <git_sha>'],
  ['7 hex letters are a word', 'commit cabcafe', 'commit cabcafe'],
  ['7 digits are an int', 'commit 4150908', 'commit <int>'],
  ['ISO 8601 date-time', '2024-02-20T22:16:36', '<date>'],
  ['ISO 8601 with offset', '2006-01-02T15:04:05+01:00', '<date>'],
  ['ISO 8601 basic', '20060102T150405Z', '<date>'],
  ['ISO 8601 space separated, fraction', '2024-02-23 02:13:53.418', '<date>'],
  ['Python logging comma fraction', '2024-02-23 02:13:53,418', '<date>'],
  ['RFC 3339 with Z', '2006-01-02T15:04:05Z', '<date>'],
  ['RFC 3339 nano, Go layout', '2006-01-02T15:04:05.999999999Z07:00', '<date>'],
  ['RFC 822', 'Mon, 02 Jan 06 15:04 MST', '<date>'],
  ['RFC 822 numeric zone', 'Mon, 02 Jan 06 15:04 -0700', '<date>'],
  ['RFC 850', 'Monday, 02-Jan-06 15:04:05 MST', '<date>'],
  ['RFC 1123 (toUTCString)', 'Mon, 02 Jan 2006 15:04:05 GMT', '<date>'],
  ['Date.toString()', 'Mon Jan 02 2006 14:04:05 GMT-0800 (Pacific Standard Time)', '<date>'],
  [
    'Date.toString(), other locale',
    'Tue Mar 05 2024 09:01:02 GMT+0100 (Mitteleuropäische Normalzeit)',
    '<date>',
  ],
  ['ctime', 'Mon Jan  2 15:04:05 2006', '<date>'],
  ['plain date', '2006-01-02', '<date>'],
  ['long date', 'Jan 18, 2019', '<date>'],
  ['clock time', '15:04:05', '<date>'],
  ['clock time, AM', '11:21:12 AM', '<date>'],
  ['clock time, pm no space', '11:21pm', '<date>'],
  ['clock time, p.m.', '9:08 p.m.', '<date>'],
  ['24-hour clock no leading zero', '0:12', '<date>'],
  ['Python datetime repr', 'datetime.datetime(2025, 6, 24, 18, 33, 0, 447640)', '<date>'],
  ['not a time: hour too big', '31:21', '<int>:<int>'],
  ['not a time: minute too big', '12:99', '<int>:<int>'],
  ['not a time: too many digits', '11:2112', '<int>:<int>'],
  ['not a date: day 40', '2006-01-40', '<int>-<int>-<int>'],
  ['duration ms', '250ms', '<duration>'],
  ['duration s', '1.234s', '<duration>'],
  ['duration, Go', '1h2m3.5s', '<duration>'],
  ['duration, ISO 8601', 'PT5M30S', '<duration>'],
  ['hex with 0x', '0x9af8', '<hex>'],
  ['hex without 0x', '9af8c3be3a1231fe', '<hex>'],
  ['hex upper case', '9AF8C3BE', '<hex>'],
  ['8+ digits are an id', '12345678', '<hex>'],
  ['negative 8+ digits', '-12345678', '<hex>'],
  ['hex letters only, no digit', 'deadbeef', 'deadbeef'],
  ['float', '0.23', '<float>'],
  ['negative float', '-0.5', '<float>'],
  ['int', '23', '<int>'],
  ['negative int', '-23', '<int>'],
  ['ints around a colon', '0:17502', '<int>:<int>'],
  ['negative after colon', 'value:-17502', 'value:<int>'],
  ['int after a dash in a word', 'maisey-908', 'maisey-<int>'],
  ['int in parentheses', '{"msg" => "(#239323)', '{"msg" => "(#<int>)'],
  ['thousands', '4,150,908', '<int>,<int>,<int>'],
  ['quoted after =', `b='1'`, 'b=<quoted_str>'],
  ['double quoted after =', 'b="0.0.0.0 1 a=True"', 'b=<quoted_str>'],
  ['quoted with spaces around =', `b = '1'`, `b = '<int>'`],
  ['mismatched quotes', `b='value"`, `b='value"`],
  ['bool after =', 'a=false', 'a=<bool>'],
  ['bool without =', 'a = true', 'a = true'],
  ['nothing variable', 'A quick brown fox', 'A quick brown fox'],
];

// words that contain digits, class and function names: never variable
const kept: readonly string[] = [
  'utf8',
  'sha256',
  'http2',
  'x86_64',
  'v2',
  'IPv6',
  'base64',
  'ES2022',
  '5xx',
  'Option::unwrap()',
  'Bee::buzz()',
  'Fee::add() called too early',
  'user.id is null',
  'self.is_valid',
  'React.useEffect',
  'datetime.now',
  'deadbee',
  '9af',
  'файл2',
  'café1',
  'ошибка_42',
  'Ölmühle3',
  'utf-8',
  'UTF-16LE',
  'iso-8859-1',
  'windows-1252',
  'SHA-256',
  'x86-64',
];

describe('normaliseMessage', () => {
  it.each(placeholders)('%s', (_case, input, expected) => {
    expect(normaliseMessage(input)).toBe(expected);
    expect(normaliseMessage(`prefix ${input}`)).toBe(`prefix ${expected}`);
    expect(normaliseMessage(`${input} suffix`)).toBe(`${expected} suffix`);
    expect(normaliseMessage(`prefix ${input} suffix`)).toBe(`prefix ${expected} suffix`);
  });

  it.each(kept)('keeps %s', (word) => {
    expect(normaliseMessage(word)).toBe(word);
    expect(normaliseMessage(`failed in ${word} again`)).toBe(`failed in ${word} again`);
  });

  it('takes word boundaries from Unicode letters, not ASCII', () => {
    // with ASCII \b the 2 after a Cyrillic letter would be a number of its own
    expect(normaliseMessage('файл2 не найден: 42 байт')).toBe('файл2 не найден: <int> байт');
    expect(normaliseMessage('Benutzer 42 für Straße7 fehlt')).toBe(
      'Benutzer <int> für Straße7 fehlt',
    );
    expect(normaliseMessage('注文123が見つかりません 456')).toBe('注文123が見つかりません <int>');
    // letters outside the BMP are letters; a symbol is not
    expect(normaliseMessage('𝒳42 failed, 🔥42 too')).toBe('𝒳42 failed, 🔥<int> too');
    expect(normaliseMessage('took 250µs at\u00a0Mon, 02 Jan 2006 15:04:05 GMT, € 42')).toBe(
      'took <duration> at <date>, € <int>',
    );
  });

  it('folds whitespace', () => {
    expect(normaliseMessage('  a\t\tb\n c  ')).toBe('a b c');
  });
});

// [why, a, b]: two reports of one incident must normalise equal
const equal: ReadonlyArray<readonly [string, string, string]> = [
  ['another id', 'Order 1234 not found', 'Order 98 not found'],
  [
    'another user',
    'No account for bob@example.com',
    'No account for alice.smith+x@corp.example.org',
  ],
  ['another host', 'connect ECONNREFUSED 10.0.3.7:5432', 'connect ECONNREFUSED 192.168.1.20:6543'],
  [
    'another ipv6 host',
    'connect to [fe80::1]:443 failed',
    'connect to [2001:db8::ff00:42:8329]:8443 failed',
  ],
  [
    'another hostname',
    'getaddrinfo ENOTFOUND api-7.eu.example.com',
    'getaddrinfo ENOTFOUND api-2.us.example.com',
  ],
  [
    'another request url',
    'GET https://a.example.com/u/1?x=2 failed',
    'GET https://b.example.com/u/77 failed',
  ],
  [
    'another uuid',
    'job 7c1811ed-e98f-4c9c-a9f9-58c757ff494f timed out',
    'job bea691f2-2e25-4bec-6838-e0c44b03d60a timed out',
  ],
  [
    'another hash',
    'blob 5fc35719b9cf96ec602dbc748ff31c587a46961d missing',
    'blob 0000000000000000000000000000000000000000 missing',
  ],
  ['another date (ISO)', 'expired at 2024-02-20T22:16:36Z', 'expired at 2025-11-30T08:00:00.123Z'],
  [
    'another date (toString)',
    'at Mon Jan 02 2006 14:04:05 GMT-0800 (PST)',
    'at Sat Nov 30 2026 08:15:41 GMT+0000 (Coordinated Universal Time)',
  ],
  ['another time', 'cron missed 11:21 PM run', 'cron missed 9:05am run'],
  ['another duration', 'query took 1503ms', 'query took 20ms'],
  ['another quoted value', `lookup failed for key='abc'`, `lookup failed for key='x y z'`],
  ['another pointer', 'segfault at 0x7ffdf000', 'segfault at 0x0'],
  [
    'another trace',
    'span 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 dropped',
    'span 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 dropped',
  ],
  ['another amount', 'balance -12.50 below limit', 'balance 3.75 below limit'],
  ['whitespace', 'pool  exhausted\n(after retries)', 'pool exhausted (after retries)'],
];

// [why, a, b]: different incidents must stay apart
const different: ReadonlyArray<readonly [string, string, string]> = [
  ['another word', 'Order not found', 'Customer not found'],
  ['another encoding', 'invalid utf8 in body', 'invalid utf16 in body'],
  ['another hyphenated encoding', 'invalid utf-8 in body', 'invalid utf-16 in body'],
  ['another hash function', 'sha256 mismatch', 'sha512 mismatch'],
  ['another protocol version', 'http2 stream reset', 'http1 stream reset'],
  ['another API version', 'GET /v2/users failed', 'GET /v3/users failed'],
  ['another architecture', 'no build for x86_64', 'no build for arm64'],
  ['another method', 'Option::unwrap() on None', 'Option::expect() on None'],
  ['another property', 'user.id is null', 'user.name is null'],
  ['another Unicode word', 'файл2 не найден', 'файл3 не найден'],
  ['another kind of value', 'expected 42', 'expected 0x2a'],
  ['a value vs none', 'retry 3 failed', 'retry failed'],
];

describe('pairs', () => {
  it.each(equal)('equal: %s', (_why, a, b) => {
    expect(normaliseMessage(a)).toBe(normaliseMessage(b));
  });
  it.each(different)('different: %s', (_why, a, b) => {
    expect(normaliseMessage(a)).not.toBe(normaliseMessage(b));
  });
});

describe('normaliseFrame', () => {
  it.each([
    [
      'function file:line',
      'handleRequest app/routes/users.ts:42',
      'handleRequest app/routes/users.ts',
    ],
    ['V8 line and column', 'at run (/srv/app/x.js:10:5)', 'at run (/srv/app/x.js)'],
    ['Python line', 'views.py, line 128, in get', 'views.py, in get'],
    ['bundle hash', 'render main.3f9a2b1c.js:1:20345', 'render main.<hex>.js'],
    [
      'release folder',
      'load /srv/releases/20240101123000/app.js:7',
      'load /srv/releases/<hex>/app.js',
    ],
  ])('%s', (_case, frame, expected) => {
    expect(normaliseFrame(frame)).toBe(expected);
  });

  it('makes the same function in two deploys equal', () => {
    expect(normaliseFrame('charge billing/pay.ts:120')).toBe(
      normaliseFrame('charge billing/pay.ts:131'),
    );
  });
});
