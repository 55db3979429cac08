import type { Occurrence } from '@shoal/contracts';
import { v5 as uuidv5 } from 'uuid';
import type { PlannedReport } from './plan.js';
import type { Severity } from './reports.js';

/**
 * A legacy report as the occurrence that opens (or, for a duplicate, joins) its issue: fingerprint
 * and title of its canonical (a duplicate's own title is the subtitle), detected at its created_at, level from its severity. Every id derives
 * from the legacy id, so importing the same report again is the same message and applies once.
 */

const LEGACY_NAMESPACE = '8c1f4a52-3d7e-5b90-a6c2-4e9d1b7f0a38';

/** The stable id of one step (`occurrence`, `command:3`, …) of importing legacy report `id`. */
export const legacyStepId = (id: string, step: string) =>
  uuidv5(`${id}\n${step}`, LEGACY_NAMESPACE);

export const legacyFingerprint = (id: string) => `legacy:${id}`;

const levelOf: Record<Severity, NonNullable<Occurrence['level']>> = {
  critical: 'fatal',
  high: 'error',
  medium: 'warning',
  low: 'info',
};

export function occurrenceOf(planned: PlannedReport, projectId: number): Occurrence {
  const r = planned.report;
  const id = legacyStepId(r.id, 'occurrence');
  const detectedAt = Date.parse(r.created_at) / 1000;
  return {
    id,
    project_id: projectId,
    fingerprint: [legacyFingerprint(planned.canonical.id)],
    issue_title: planned.canonical.title,
    ...(planned.canonical !== r
      ? { subtitle: r.title }
      : r.description !== undefined && { subtitle: r.description.split('\n', 1)[0]! }),
    type: 1,
    detection_time: detectedAt,
    level: r.severity ? levelOf[r.severity] : 'error',
    culprit: r.source ?? null,
    evidence_data: {
      legacy: {
        id: r.id,
        ...(r.reporter !== undefined && { reporter: r.reporter }),
        ...(r.category !== undefined && { category: r.category }),
        ...r.extra,
      },
    },
    payload_type: 'occurrence',
    event: {
      event_id: id,
      project_id: projectId,
      platform: 'other',
      timestamp: detectedAt,
    },
    ...((r.trace_id ?? r.request_id ?? r.release_sha) !== undefined && {
      shoal: {
        ...(r.trace_id !== undefined && { trace_id: r.trace_id }),
        ...(r.request_id !== undefined && { request_id: r.request_id }),
        ...(r.release_sha != null && { release_sha: r.release_sha }),
      },
    }),
  };
}
