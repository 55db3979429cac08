/**
 * Each service's main module by the name the image's first argument gives it, apart from
 * services.ts: running one service loads its own modules only, not every service's configuration
 * and lookups (~200 modules more, lifecycle's HTTP API among them). services.ts takes `main` from
 * here, so the two name the same services.
 */
export const serviceMains = {
  'ingest-gateway': () => import('@shoal/ingest-gateway/main'),
  grouping: () => import('@shoal/grouping/main'),
  regression: () => import('@shoal/regression/main'),
  dedup: () => import('@shoal/dedup/main'),
  lifecycle: () => import('@shoal/lifecycle/main'),
} satisfies Record<string, () => Promise<unknown>>;

export type ServiceName = keyof typeof serviceMains;

export const serviceNames = Object.keys(serviceMains) as ServiceName[];
