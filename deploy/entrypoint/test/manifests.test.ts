import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env } from '@shoal/config';
import { metricsRegistry } from '@shoal/observability';
import { describe, expect, it } from 'vitest';
import { serviceNames, services, type ServiceEntry } from '../src/services.js';
import { setupConfig } from '../src/setup.js';
import { variablesRead } from './variables.js';
import {
  containersOf,
  podSpecOf,
  readYaml,
  render,
  type Container,
  type K8sObject,
} from './kustomize.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const k8s = path.join(repo, 'deploy', 'k8s');
const serviceFolders = fs
  .readdirSync(path.join(repo, 'services'), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);

/** The base and every overlay, as kustomize would render them. */
const renderings = [
  ['base', path.join(k8s, 'base')],
  ...fs
    .readdirSync(path.join(k8s, 'overlays'))
    .map((name) => [`overlay ${name}`, path.join(k8s, 'overlays', name)]),
].map(([name, dir]) => ({ name: name!, objects: render(dir!) }));

/**
 * What a Secret key stands for in these checks: a value of the shape the configuration expects
 * (Secrets are created out of band, never in the repository). A variable read from a Secret
 * without a sample here fails the test, naming it.
 */
const secretSamples: Record<string, string> = {
  DATABASE_URL: 'postgres://shoal:secret@postgres.example.com:5432/shoal?sslmode=verify-full',
  SHOAL_INGEST_TOKENS: 'token-a,token-b:ingest',
  SHOAL_API_TOKENS: 'agent-1:secret-token-1:read+claim+write',
  KAFKA_SASL_USERNAME: 'shoal',
  KAFKA_SASL_PASSWORD: 'secret',
  SCHEMA_REGISTRY_USERNAME: 'shoal',
  SCHEMA_REGISTRY_PASSWORD: 'secret',
};

/** The container's environment as the kubelet would set it (Secrets by their samples). */
function environmentOf(container: Container, objects: K8sObject[]): Env {
  const configMap = (name: string) => {
    const found = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
    if (!found) throw new Error(`container ${container.name}: no ConfigMap ${name}`);
    return (found.data ?? {}) as Record<string, string>;
  };
  const env: Env = {};
  for (const from of container.envFrom ?? []) {
    if (from.secretRef)
      throw new Error(
        `container ${container.name}: envFrom a Secret hides which variables it sets; name each`,
      );
    Object.assign(env, configMap(from.configMapRef!.name));
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (variable.valueFrom?.configMapKeyRef)
      env[variable.name] = configMap(variable.valueFrom.configMapKeyRef.name)[
        variable.valueFrom.configMapKeyRef.key
      ];
    else if (variable.valueFrom?.secretKeyRef) {
      const sample = secretSamples[variable.name];
      if (sample === undefined) throw new Error(`no sample value for Secret-held ${variable.name}`);
      env[variable.name] = sample;
    }
  }
  return env;
}

const deployments = (objects: K8sObject[]) => objects.filter((o) => o.kind === 'Deployment');
const selects = (o: K8sObject, name: string) =>
  (o.spec as { selector?: { matchLabels?: Record<string, string> } }).selector?.matchLabels?.[
    'app.kubernetes.io/name'
  ] === name;

describe.each(renderings)('the Kubernetes manifests: $name', ({ objects }) => {
  it('every object is valid against the Kubernetes API schemas (kubernetes-models 4.5.1, Kubernetes 1.27)', async () => {
    expect(objects.length).toBeGreaterThan(0);
    for (const o of objects) {
      const [group, version] = o.apiVersion.includes('/')
        ? o.apiVersion.split('/')
        : [undefined, o.apiVersion];
      const module = (await import(
        `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`
      )) as Record<string, new (data: unknown) => { validate(): void }>;
      const Model = module[o.kind];
      expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model!(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    }
  });

  it('every folder under services/ has a Deployment running it through the dispatcher, and the dispatcher knows no other', () => {
    expect(serviceNames.sort()).toEqual([...serviceFolders].sort());
    for (const name of serviceFolders) {
      const deployment = deployments(objects).find((o) => o.metadata.name === name);
      expect(deployment, `a Deployment for services/${name}`).toBeDefined();
      expect(containersOf(deployment!)[0]!.args).toEqual([name]);
    }
    for (const o of objects.filter((o) => podSpecOf(o)))
      for (const c of containersOf(o)) expect(['setup', ...serviceNames]).toContain(c.args?.[0]);
  });

  it('each Deployment sets every variable its service requires and none it does not read; probes and scrapes go to the port it listens on', () => {
    for (const name of serviceNames) {
      const deployment = deployments(objects).find((o) => o.metadata.name === name)!;
      const container = containersOf(deployment)[0]!;
      const env = environmentOf(container, objects);
      const { read, result } = variablesRead(services[name]!.config, env);
      expect(
        Object.keys(env).filter((v) => !read.has(v)),
        `${name}: set, never read`,
      ).toEqual([]);
      const { opsHost, opsPort, http } = result as ReturnType<ServiceEntry['config']>;
      if (http) {
        // a consumer's own HTTP server (lifecycle's agent API) listens where its Service reaches it
        expect(http.host, `${name}: HTTP host`).toBe('0.0.0.0');
        expect(container.ports?.find((p) => p.name === 'http')?.containerPort).toBe(http.port);
      }
      expect(opsPort, `${name}: /healthz /readyz /metrics served`).toBeDefined();
      expect(opsHost, `${name}: listens where the kubelet and Prometheus reach it`).toBe('0.0.0.0');
      const portOf = (port: string | number) =>
        typeof port === 'number'
          ? port
          : container.ports?.find((p) => p.name === port)?.containerPort;
      for (const [probe, route] of [
        ['startupProbe', '/healthz'],
        ['livenessProbe', '/healthz'],
        ['readinessProbe', '/readyz'],
      ] as const) {
        const get = (container[probe] as { httpGet: { path: string; port: string | number } })
          .httpGet;
        expect(get.path, `${name} ${probe}`).toBe(route);
        expect(portOf(get.port), `${name} ${probe}`).toBe(opsPort);
      }
      const template = (
        deployment.spec as { template: { metadata: { annotations: Record<string, string> } } }
      ).template.metadata.annotations;
      expect(template['prometheus.io/scrape']).toBe('true');
      expect(Number(template['prometheus.io/port'])).toBe(opsPort);
      expect(template['prometheus.io/path']).toBe('/metrics');
    }
  });

  it('the setup Job runs `setup` with every variable it needs and none it does not read', () => {
    const job = objects.find((o) => o.kind === 'Job' && o.metadata.name === 'shoal-setup');
    expect(job).toBeDefined();
    const container = containersOf(job!)[0]!;
    expect(container.args).toEqual(['setup']);
    const env = environmentOf(container, objects);
    const { read } = variablesRead(setupConfig, env);
    expect(Object.keys(env).filter((v) => !read.has(v))).toEqual([]);
  });

  it('consumers have a PodDisruptionBudget and a grace period longer than a batch can take; HTTP services a Service on their port', () => {
    // a batch's worst case as the runtime measures it: the batch histogram's largest bucket
    const batchBuckets = (
      metricsRegistry.getSingleMetric('shoal_batch_duration_seconds') as unknown as {
        upperBounds: number[];
      }
    ).upperBounds;
    for (const [name, entry] of Object.entries(services)) {
      const deployment = deployments(objects).find((o) => o.metadata.name === name)!;
      if (entry.roles.includes('consumer')) {
        expect(
          objects.some((o) => o.kind === 'PodDisruptionBudget' && selects(o, name)),
          `${name}: PDB`,
        ).toBe(true);
        expect(podSpecOf(deployment)!.terminationGracePeriodSeconds).toBeGreaterThan(
          Math.max(...batchBuckets),
        );
      }
      if (entry.roles.includes('http')) {
        const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === name);
        expect(service, `${name}: Service`).toBeDefined();
        const target = (service!.spec as { ports: { targetPort: string | number }[] }).ports[0]!
          .targetPort;
        expect(
          containersOf(deployment)[0]!.ports?.some(
            (p) => p.name === target || p.containerPort === target,
          ),
        ).toBe(true);
      }
    }
  });

  it('every pod runs as non-root with a read-only root filesystem, no privilege escalation, and sized resources', () => {
    for (const o of objects.filter((o) => podSpecOf(o))) {
      const pod = podSpecOf(o)!;
      expect(
        (pod.securityContext as { runAsNonRoot?: boolean }).runAsNonRoot,
        o.metadata.name,
      ).toBe(true);
      for (const c of pod.containers) {
        const security = c.securityContext as Record<string, unknown>;
        expect(security.readOnlyRootFilesystem, c.name).toBe(true);
        expect(security.allowPrivilegeEscalation, c.name).toBe(false);
        const resources = c.resources as {
          requests?: Record<string, string>;
          limits?: Record<string, string>;
        };
        for (const r of ['cpu', 'memory']) {
          expect(resources.requests?.[r], `${c.name} requests ${r}`).toBeDefined();
          expect(resources.limits?.[r], `${c.name} limits ${r}`).toBeDefined();
        }
      }
    }
  });
});

describe('the alert rules (deploy/k8s/alerts.yaml)', () => {
  const rules = (
    readYaml(path.join(k8s, 'alerts.yaml'))[0] as {
      groups: {
        name: string;
        rules: {
          alert: string;
          expr: string;
          labels: Record<string, string>;
          annotations: Record<string, string>;
        }[];
      }[];
    }
  ).groups.flatMap((g) => g.rules);

  it('name only metrics the services export (or kube-state-metrics), each rule with a severity and a description', async () => {
    const exported = new Set((await metricsRegistry.getMetricsAsJSON()).map((m) => m.name));
    const histogramParts = /_(bucket|sum|count)$/;
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'ShoalConsumerLagGrowing',
        'ShoalDeadLetters',
        'ShoalConsumerStopped',
        'ShoalKeysParked',
        'ShoalMessagesHeld',
        'ShoalOutboxBacklog',
        'ShoalServiceNotReady',
      ]),
    );
    for (const rule of rules) {
      const names = rule.expr.match(/\b(shoal|kube)_[a-z_]+\b/g) ?? [];
      expect(names.length, rule.alert).toBeGreaterThan(0);
      for (const name of names.filter((n) => n.startsWith('shoal_')))
        expect(
          exported.has(name) || exported.has(name.replace(histogramParts, '')),
          `${rule.alert}: ${name}`,
        ).toBe(true);
      expect(['warning', 'critical']).toContain(rule.labels.severity);
      expect(rule.annotations.description?.length, rule.alert).toBeGreaterThan(20);
    }
  });
});
