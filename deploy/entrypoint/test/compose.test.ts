import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env } from '@shoal/config';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { serviceNames, services, type ServiceEntry } from '../src/services.js';
import { setupConfig } from '../src/setup.js';
import { variablesRead } from './variables.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface ComposeService {
  build?: string;
  image?: string;
  command?: string[];
  environment?: Record<string, string | number>;
  ports?: string[];
  profiles?: string[];
  depends_on?: Record<string, { condition: string }>;
  read_only?: boolean;
}

/** docker-compose.yml as compose reads it: merge keys applied, `${VAR:-default}` as if VAR were unset. */
const interpolate = (text: string) =>
  text.replace(
    /\$\{([A-Z_]+)(?::-([^}]*))?\}/g,
    // compose interpolates values after parsing: one left empty is '', never YAML's null
    (_, _name: string, fallback?: string) => (fallback ? fallback : "''"),
  );
const compose = parse(interpolate(fs.readFileSync(path.join(repo, 'docker-compose.yml'), 'utf8')), {
  merge: true,
}) as { services: Record<string, ComposeService> };

const environmentOf = (service: ComposeService): Env =>
  Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, String(v)]));

describe('docker-compose.yml', () => {
  it('runs every service of the dispatcher from the image built here, after setup, in the services profile', () => {
    const fromImage = Object.entries(compose.services).filter(([, s]) => s.build === '.');
    expect(fromImage.map(([name]) => name).sort()).toEqual(['setup', ...serviceNames].sort());
    for (const [name, service] of fromImage) {
      expect(service.command, name).toEqual([name]);
      expect(service.image).toBe('shoal:local');
      expect(service.profiles).toEqual(['services']);
      expect(service.read_only).toBe(true);
    }
    for (const name of serviceNames)
      expect(compose.services[name]!.depends_on?.setup?.condition).toBe(
        'service_completed_successfully',
      );
  });

  it("each service gets every variable its configuration requires and none it does not read, and publishes its port on the host's loopback", () => {
    for (const name of serviceNames) {
      const service = compose.services[name]!;
      const { read, result } = variablesRead(services[name]!.config, environmentOf(service));
      expect(
        Object.keys(environmentOf(service)).filter((v) => !read.has(v)),
        name,
      ).toEqual([]);
      const { opsHost, opsPort, http } = result as ReturnType<ServiceEntry['config']>;
      expect(opsHost, name).toBe('0.0.0.0');
      expect(service.ports, name).toEqual([
        `127.0.0.1:${opsPort}:${opsPort}`,
        ...(http ? [`127.0.0.1:${http.port}:${http.port}`] : []),
      ]);
      if (http) expect(http.host, name).toBe('0.0.0.0');
    }
    const setup = environmentOf(compose.services.setup!);
    const { read } = variablesRead(setupConfig, setup);
    expect(Object.keys(setup).filter((v) => !read.has(v))).toEqual([]);
  });

  it('the services reach Kafka on the listener it advertises inside the compose network', () => {
    const kafka = environmentOf(compose.services.kafka!);
    const advertised = kafka.KAFKA_ADVERTISED_LISTENERS!.split(',');
    for (const name of ['setup', ...serviceNames])
      expect(advertised.map((l) => l.replace(/^[A-Z]+:\/\//, ''))).toContain(
        environmentOf(compose.services[name]!).KAFKA_BROKERS,
      );
  });
});
