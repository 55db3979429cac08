/** The value at quantile `q` (0–1) of `sorted` (ascending), nearest rank; NaN when it is empty. */
export const quantile = (sorted: number[], q: number) =>
  sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;
