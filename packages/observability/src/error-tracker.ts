import { ERROR_TRACKER_VARIABLE, errorTrackerLine, type ErrorTrackerLine } from '@shoal/config';
import type { Logger } from './logger.js';

/**
 * Every service reports its unhandled errors to the error tracker when `SHOAL_ERROR_TRACKER_DSN`
 * is a DSN (Sentry's envelope protocol; any Sentry-compatible ingest). The SDK is
 * `@sentry/node-core`'s `light` entry: the Node client, transport and the uncaught-exception and
 * unhandled-rejection handlers, without OpenTelemetry or auto-instrumentation (no tracing is sent).
 * Unset or `off`: nothing is started. `errorTrackerState` is the line `/readyz` and the heartbeat
 * show: `down` while the last report to the ingest failed (shown, never deciding readiness).
 *
 * An uncaught exception is reported, flushed, and then the process exits as Node's default does;
 * a service's fatal stop (`runService`) reports with `reportFatal` before it exits. The SDK is
 * loaded only when a DSN is set: a process without one never imports it (nor OpenTelemetry's API,
 * whose ESM build vitest's resolver cannot load).
 */

type Sdk = typeof import('@sentry/node-core/light');

let reporting: { host: string; failure?: string; sdk: Sdk } | undefined;

/** Starts reporting for `service` when the DSN says so; returns whether it did. */
export async function startErrorTracker(
  service: string,
  logger: Logger,
  dsn: string | undefined = process.env[ERROR_TRACKER_VARIABLE],
): Promise<boolean> {
  if (reporting || errorTrackerLine(dsn).status !== 'configured') return false;
  const host = new URL(dsn!).host;
  const Sentry = await import('@sentry/node-core/light');
  const state: { host: string; failure?: string; sdk: Sdk } = { host, sdk: Sentry };
  Sentry.init({
    dsn: dsn!,
    serverName: service,
    release: process.env.SHOAL_RELEASE,
    environment: process.env.SHOAL_ENVIRONMENT,
    sendDefaultPii: false,
    tracesSampleRate: 0,
    initialScope: { tags: { service } },
    transport: (options) => {
      const transport = Sentry.makeNodeTransport(options);
      return {
        ...transport,
        send: async (envelope) => {
          try {
            const answer = await transport.send(envelope);
            const code = answer.statusCode;
            state.failure =
              code !== undefined && (code < 200 || code >= 300)
                ? `the ingest answered HTTP ${code}`
                : undefined;
            return answer;
          } catch (error) {
            state.failure = (error as Error).message;
            throw error;
          }
        },
      };
    },
  });
  reporting = state;
  // the SDK refuses a DSN its parser does not take (a key with a dash, no project) with a console
  // line and sends nothing: that must show as down, not as configured
  if (!Sentry.getClient()?.getDsn()) {
    state.failure = 'the SDK refused the DSN (expected <scheme>://<key>@<host>/<project id>)';
    logger.error({ host }, `error tracker: ${state.failure}; nothing is reported`);
    return false;
  }
  logger.info({ host }, 'reporting unhandled errors to the error tracker');
  return true;
}

/** The error tracker's line as this process sees it: the configuration's, `down` while reports fail. */
export function errorTrackerState(): ErrorTrackerLine {
  const line = errorTrackerLine();
  if (!reporting || line.status !== 'configured') return line;
  return reporting.failure
    ? { status: 'down', detail: `reports to ${reporting.host} fail: ${reporting.failure}` }
    : line;
}

/** Reports a fatal error (the process is about to exit) and waits up to `timeoutMs` to send it. */
export async function reportFatal(error: unknown, timeoutMs = 2_000): Promise<void> {
  if (!reporting) return;
  reporting.sdk.captureException(error, { level: 'fatal' });
  await reporting.sdk.flush(timeoutMs);
}
