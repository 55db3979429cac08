import type { FieldProblem } from '@shoal/contracts';
import type { FastifyError, FastifyInstance } from 'fastify';

/** A field problem, its path starting with the request part: `/body/lease_seconds`, `/query/status/0`, `/headers/if-match`. */
export type RequestProblem = FieldProblem;

/**
 * Every answer other than 2xx/304: `{error, message, problems?, ...details}` with the status and
 * headers it carries. `details` holds what a code adds (409: `issue`, `allowed_transitions`; 412:
 * `current_version`).
 */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (problems: RequestProblem[], code = 'invalid_request') =>
  new ApiError(400, code, `invalid ${problems.map((p) => p.path).join(', ')}; nothing was sent`, {
    problems,
  });

/**
 * The one error handler: ApiErrors as they say; Fastify's own by their status (413 body too
 * large, 415 media type, 400 unparsable JSON); anything else 500, logged.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      return reply
        .status(error.statusCode)
        .headers(error.headers)
        .send({ error: error.code, message: error.message, ...error.details });
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    const code =
      status === 413
        ? 'too_large'
        : status === 415
          ? 'unsupported_media_type'
          : status >= 500
            ? 'internal'
            : 'invalid_request';
    return reply
      .status(status)
      .send({ error: code, message: status >= 500 ? 'internal error' : error.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send({ error: 'not_found', message: `no route ${request.method} ${request.url}` }),
  );
}
