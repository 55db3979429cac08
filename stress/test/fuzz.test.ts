import { expect, it } from 'vitest';
import { runFuzz } from '../fuzz/engine.js';
import { fuzzTargets } from '../fuzz/targets.js';

// `npm run fuzz` at a size the suite affords: every kind at least once (there are fewer than 300)
it.each(Object.keys(fuzzTargets))(
  '%s: every bad message dead-lettered once with its reason, every good one applied once (held ones once announced), nothing left behind',
  async (name) => {
    const report = await runFuzz(fuzzTargets[name]!, { messages: 300, stallSeconds: 30 });
    expect(report.kinds.length).toBeLessThanOrEqual(300);
    const differing = report.kinds
      .filter((k) => k.ok !== k.sent)
      .map((k) => `${k.topic} ${k.kind}: ${k.wrong[0]}`);
    const failed = report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    expect({ failed, differing }).toEqual({ failed: [], differing: [] });
    // held for an entity announced after them, and parked behind a held one on an ordered key
    // (a target without entities that must be announced sends none)
    if (report.late.sent > 0) {
      expect(report.late.held).toBeGreaterThan(0);
      expect(report.late.parked).toBeGreaterThan(0);
    }
  },
  300_000,
);
