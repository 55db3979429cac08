import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * The part of kustomize that Shoal's manifests use, so a test reads them as `kubectl apply -k`
 * would without the binary: resources (files and kustomization folders), `configMapGenerator`
 * (literals and files; `behavior: merge` in an overlay), `images`, `replicas`, `namespace`,
 * `labels` (metadata only). Any other field — patches above all — is refused: overlays only add
 * resources and settings. Generated names keep no hash suffix here (kustomize adds one and
 * rewrites the references to it; the names compared are the same).
 */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

const supported = new Set([
  'apiVersion',
  'kind',
  'resources',
  'configMapGenerator',
  'images',
  'replicas',
  'namespace',
  'labels',
]);

interface Kustomization {
  resources?: string[];
  configMapGenerator?: {
    name: string;
    behavior?: 'create' | 'merge' | 'replace';
    literals?: string[];
    files?: string[];
  }[];
  images?: { name: string; newName?: string; newTag?: string }[];
  replicas?: { name: string; count: number }[];
  namespace?: string;
  labels?: { pairs: Record<string, string> }[];
}

export function readYaml(file: string): unknown[] {
  return parseAllDocuments(fs.readFileSync(file, 'utf8')).map((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    return doc.toJS() as unknown;
  });
}

const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

export function render(dir: string): K8sObject[] {
  const file = path.join(dir, 'kustomization.yaml');
  const k = readYaml(file)[0] as Kustomization;
  const unsupported = Object.keys(k).filter((key) => !supported.has(key));
  if (unsupported.length)
    throw new Error(`${file}: ${unsupported.join(', ')} (only resources and settings, no patches)`);
  const objects: K8sObject[] = [];
  for (const resource of k.resources ?? []) {
    const where = path.join(dir, resource);
    if (fs.statSync(where).isDirectory()) objects.push(...render(where));
    else objects.push(...(readYaml(where) as K8sObject[]));
  }
  for (const generator of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const literal of generator.literals ?? []) {
      const at = literal.indexOf('=');
      data[literal.slice(0, at)] = literal.slice(at + 1);
    }
    for (const entry of generator.files ?? []) {
      const [key, source] = entry.includes('=') ? entry.split('=') : [path.basename(entry), entry];
      data[key!] = fs.readFileSync(path.join(dir, source!), 'utf8');
    }
    const existing = objects.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name === generator.name,
    );
    if ((generator.behavior ?? 'create') === 'create') {
      if (existing) throw new Error(`${file}: ConfigMap ${generator.name} exists already`);
      objects.push({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: generator.name },
        data,
      });
    } else {
      if (!existing)
        throw new Error(`${file}: no ConfigMap ${generator.name} to ${generator.behavior}`);
      existing.data = {
        ...(generator.behavior === 'merge' ? (existing.data as object) : {}),
        ...data,
      };
    }
  }
  for (const o of objects) {
    if (k.namespace && !clusterScoped.has(o.kind)) o.metadata.namespace = k.namespace;
    for (const { pairs } of k.labels ?? []) o.metadata.labels = { ...o.metadata.labels, ...pairs };
    for (const { name, count } of k.replicas ?? [])
      if (o.metadata.name === name && (o.kind === 'Deployment' || o.kind === 'StatefulSet'))
        (o.spec as { replicas?: number }).replicas = count;
    for (const container of containersOf(o))
      for (const image of k.images ?? [])
        if (container.image === image.name || container.image.startsWith(`${image.name}:`))
          container.image = `${image.newName ?? image.name}:${image.newTag ?? 'latest'}`;
  }
  return objects;
}

export interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: {
      secretKeyRef?: { name: string; key: string; optional?: boolean };
      configMapKeyRef?: { name: string; key: string; optional?: boolean };
    };
  }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  [field: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  [field: string]: unknown;
}

/** The pod template of a Deployment or Job (undefined for other kinds). */
export function podSpecOf(o: K8sObject): PodSpec | undefined {
  if (o.kind !== 'Deployment' && o.kind !== 'Job') return undefined;
  return (o.spec as { template: { spec: PodSpec } }).template.spec;
}

export const containersOf = (o: K8sObject): Container[] => podSpecOf(o)?.containers ?? [];
