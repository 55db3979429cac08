import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ContractError,
  SAFE_INTEGER_KEYWORD,
  assertValid,
  loadSchema,
  problemsOf,
  topicKeys,
  validators,
  withSafeIntegers,
} from '../src/index.js';
import { generateTypes, generatedTypesFile } from '../src/generate.js';
import { example, examples } from './examples.js';

describe('schemas/examples', () => {
  it('has an example for every topic', () => {
    expect(new Set(examples().map((e) => e.key))).toEqual(new Set(topicKeys));
  });

  it.each(examples().map((e) => [e.file, e] as const))(
    '%s is valid for its topic (Ajv and zod agree)',
    (_file, e) => {
      expect(problemsOf(e.key, e.value)).toEqual([]);
      expect(validators[e.key].safeParse(e.value).success).toBe(true);
    },
  );
});

describe('validation', () => {
  const sentry = example('occurrence.sentry-monitor-failure.json');

  it('accepts a Sentry occurrence unchanged, unknown Sentry fields included', () => {
    expect(
      assertValid('occurrences', { ...sentry, some_future_sentry_field: { x: 1 } }),
    ).toMatchObject({ project_id: 1 });
  });

  it('names every bad field, missing ones by their own path', () => {
    const { project_id: _p, ...missingProject } = sentry;
    const bad = {
      ...missingProject,
      fingerprint: [''],
      level: 'loud',
      shoal: { detector_id: 0, unknown: true },
    };
    expect(() => assertValid('occurrences', bad)).toThrow(ContractError);
    const paths = problemsOf('occurrences', bad).map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/project_id',
        '/fingerprint/0',
        '/level',
        '/shoal/detector_id',
        '/shoal/unknown',
      ]),
    );
  });

  it('requires event_id or an embedded event (Shoal needs one of them)', () => {
    const { event: _e, event_id: _id, ...neither } = sentry;
    expect(problemsOf('occurrences', neither).length).toBeGreaterThan(0);
    expect(validators.occurrences.safeParse(neither).success).toBe(false);
    const { event: _e2, ...idOnly } = sentry;
    expect(problemsOf('occurrences', idOnly)).toEqual([]);
  });

  it('zod validators report the same paths as the schema', () => {
    const bad = {
      ...example('lifecycle-command.claim.json'),
      command: 'explode',
      lease_seconds: 0,
    };
    const result = validators.lifecycleCommands.safeParse(bad);
    expect(result.success).toBe(false);
    const zodPaths = result.error!.issues.map((i) => `/${i.path.join('/')}`);
    expect(zodPaths).toEqual(
      expect.arrayContaining(problemsOf('lifecycleCommands', bad).map((p) => p.path)),
    );
  });

  it('lifecycle: run events, resolutions and the issue snapshot are closed; commands name their origin', () => {
    const resolve = example('lifecycle-command.resolve-in-commit.json');
    const bad = {
      ...resolve,
      origin: 'robot',
      close_reason: 'bored',
      resolution: { type: 'in_commit', commit_shas: ['not-a-sha'], surprise: 1 },
      run_event: { run_id: 'r1', phase: 'exploded', extra: true },
    };
    expect(problemsOf('lifecycleCommands', bad).map((p) => p.path)).toEqual(
      expect.arrayContaining([
        '/origin',
        '/close_reason',
        '/resolution/commit_shas/0',
        '/resolution/surprise',
        '/run_event/phase',
        '/run_event/extra',
      ]),
    );
    const event = example('lifecycle-event.resolved.json');
    expect(
      problemsOf('lifecycle', {
        ...event,
        issue: { ...(event.issue as object), surprise: 1 },
      }).map((p) => p.path),
    ).toEqual(['/issue/surprise']);
  });

  it('closes Shoal-owned topics to unknown fields', () => {
    expect(
      problemsOf('groupEvents', { ...example('group-event.group-created.json'), surprise: 1 }),
    ).toEqual([{ path: '/surprise', message: 'must NOT have additional properties' }]);
  });
});

describe('integers JavaScript cannot hold exactly', () => {
  const sentry = example('occurrence.sentry-monitor-failure.json');
  const beyond = JSON.parse('9007199254740993') as number; // what JSON.parse makes of 2^53 + 1

  it('refuses them at every integer-typed location, naming the field, and accepts 2^53 − 1', () => {
    const bad = {
      ...sentry,
      project_id: beyond,
      type: -beyond,
      initial_issue_priority: 1e300,
      event: { ...(sentry.event as object), project_id: 2 ** 53 },
      shoal: { detector_id: Number.MAX_VALUE },
    };
    const problems = problemsOf('occurrences', bad);
    expect(problems.map((p) => p.path).sort()).toEqual([
      '/event/project_id',
      '/initial_issue_priority',
      '/project_id',
      '/shoal/detector_id',
      '/type',
    ]);
    expect(problems[0]!.message).toContain(String(Number.MAX_SAFE_INTEGER));
    expect(() => assertValid('occurrences', bad)).toThrow(/\/project_id must be an integer/);
    expect(validators.occurrences.safeParse(bad).success).toBe(false);

    const safe = {
      ...sentry,
      project_id: Number.MAX_SAFE_INTEGER,
      type: -Number.MAX_SAFE_INTEGER,
      initial_issue_priority: null,
    };
    expect(problemsOf('occurrences', safe)).toEqual([]);
    expect(validators.occurrences.safeParse(safe).success).toBe(true);
  });

  it('leaves numbers that are not integer-typed alone (detection time may be any size)', () => {
    expect(problemsOf('occurrences', { ...sentry, detection_time: 1e300 })).toEqual([]);
  });

  it('marks integer-typed locations without touching enums', () => {
    const marked = withSafeIntegers(loadSchema('statusChanges')) as unknown as {
      properties: Record<string, Record<string, unknown>>;
    };
    expect(marked.properties.project_id).toMatchObject({ [SAFE_INTEGER_KEYWORD]: true });
    expect(marked.properties.detector_id).toMatchObject({ [SAFE_INTEGER_KEYWORD]: true });
    expect(marked.properties.new_status!.enum).toEqual([0, 1, 2]);
    expect(marked.properties.update_date).not.toHaveProperty(SAFE_INTEGER_KEYWORD);
  });
});

describe('generated types', () => {
  it('match schemas/ exactly (run `npm run contracts:generate` after changing a schema)', async () => {
    expect(fs.readFileSync(generatedTypesFile, 'utf8')).toBe(await generateTypes());
  });
});
