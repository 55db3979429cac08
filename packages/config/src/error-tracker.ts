/**
 * The error tracker as a process sees it, from `SHOAL_ERROR_TRACKER_DSN`: one line for `shoal
 * status` and each instance's heartbeat, never a mere log warning. It never decides readiness (a
 * deployment without a tracker must still become ready). Unset is `not configured`; `off` (what
 * `npm start` sets) is `off`. The DSN itself is never shown, only its host: its user part is the
 * project's key. This is the line as the configuration says; a service that reports (the
 * observability package's `errorTrackerState`) turns it `down` while its reports fail.
 */
export interface ErrorTrackerLine {
  status: 'off' | 'not configured' | 'down' | 'configured';
  detail: string;
}

export const ERROR_TRACKER_VARIABLE = 'SHOAL_ERROR_TRACKER_DSN';

export function errorTrackerLine(
  dsn: string | undefined = process.env[ERROR_TRACKER_VARIABLE],
): ErrorTrackerLine {
  if (dsn === undefined || dsn.trim() === '')
    return {
      status: 'not configured',
      detail: `${ERROR_TRACKER_VARIABLE} is unset: unhandled errors are only logged`,
    };
  if (dsn.trim() === 'off') return { status: 'off', detail: `${ERROR_TRACKER_VARIABLE}=off` };
  let host: string;
  try {
    host = new URL(dsn).host;
  } catch {
    return { status: 'down', detail: `${ERROR_TRACKER_VARIABLE} is not a DSN (a URL)` };
  }
  return {
    status: 'configured',
    detail: `unhandled errors are reported to ${host}`,
  };
}
