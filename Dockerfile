# One image for every Shoal service. `docker build -t shoal .`, then
#   docker run shoal <service>              ingest-gateway, grouping, ... (deploy/entrypoint/src/services.ts)
#   docker run shoal setup                  migrations, topics, schemas: the Kubernetes Job, before the services
#   docker run shoal check-config <service> parse that service's environment, then exit
# Configuration is the environment only (README, "Configuration" and "Deploy").

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: every dependency, TypeScript compiled to each workspace's dist/ ---
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY . .
# install scripts stay off, as npm 11 has them; the root's postinstall (the kafkajs patch) runs explicitly
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npx patch-package --error-on-fail \
 && npx tsc -b deploy/entrypoint \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund
# only what runs: package.json, dist/, migrations/ and own node_modules/ (a version other than the
# hoisted one, e.g. contracts' ajv 8) of each built workspace, the schemas, the root node_modules
RUN mkdir -p /out \
 && cp -r package.json node_modules schemas /out/ \
 && for dir in packages/* services/* deploy/entrypoint; do \
      [ -d "$dir/dist" ] || continue; \
      mkdir -p "/out/$dir" && cp -r "$dir/package.json" "$dir/dist" "/out/$dir/"; \
      for extra in migrations node_modules; do \
        [ ! -d "$dir/$extra" ] || cp -r "$dir/$extra" "/out/$dir/"; \
      done; \
    done \
 && find /out -name '*.tsbuildinfo' -delete

# --- runtime: production dependencies and compiled code, run as a non-root user ---
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /out/ ./
# uid/gid 1000 is the image's `node` user; numeric so Kubernetes' runAsNonRoot can check it
USER 1000:1000
# the services' ports (defaults; the manifests and compose set them): gateway HTTP, lifecycle's agent
# API, consumers' /metrics
EXPOSE 8090 8091 9464
# the service's own main handles SIGTERM (a consumer commits its batch in flight, then exits 0);
# exec form, so node is PID 1 and receives it
ENTRYPOINT ["node", "deploy/entrypoint/dist/main.js"]
CMD ["--help"]
