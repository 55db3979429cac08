import type { FieldProblem } from '@shoal/contracts';

/** A field problem of one request part: `index` is the item's place in the body (absent for a header). */
export type RequestProblem = FieldProblem & { index?: number };

/** An answer other than 2xx, as the error handler sends it: `{error, message, problems?}`. */
export class HttpProblem extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly problems?: RequestProblem[],
  ) {
    super(message);
  }
}
