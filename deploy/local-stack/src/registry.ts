import fs from 'node:fs';
import path from 'node:path';
import { findJava, type Java } from './java.js';
import { mvn } from './maven.js';
import { logFile, run, runningPid, startDetached, type ManagedProcess } from './processes.js';
import { REGISTRY_FALLBACK, REGISTRY_PRIMARY, stackDir, type StackSettings } from './settings.js';

type RegistrySettings = StackSettings['registry'];
type PostgresSettings = StackSettings['postgres'];

export const registryProcess = (s: RegistrySettings): ManagedProcess => ({
  name: 'registry',
  dir: s.dir,
  marker: `-Dshoal.stack=registry:${s.dir}`,
});

export interface RegistryChoice {
  version: string;
  java: Java;
  /** Why this release and not the current one, when it is the fallback. */
  note?: string;
}

/** Apicurio 3.3.3 needs Java 21+; where there is none, 2.6.13.Final on Java 17 serves the same ccompat API. */
export function chooseRegistry(): RegistryChoice {
  const modern = findJava(REGISTRY_PRIMARY.minJava);
  if (modern) return { version: REGISTRY_PRIMARY.version, java: modern };
  const old = findJava(REGISTRY_FALLBACK.minJava);
  if (!old)
    throw new Error(
      'registry: needs Java 17 or newer; none found on PATH, in JAVA_HOME or under /usr/lib/jvm',
    );
  return {
    version: REGISTRY_FALLBACK.version,
    java: old,
    note: `fallback: no Java >= ${REGISTRY_PRIMARY.minJava} found for Apicurio ${REGISTRY_PRIMARY.version}; in-memory storage only`,
  };
}

const installDir = (s: RegistrySettings, version: string) =>
  path.join(s.dir, `apicurio-${version}`);

/** Fetches the `all` archive of io.apicurio:apicurio-registry-app through Maven and unpacks it once. */
export function installRegistry(
  s: RegistrySettings,
  version: string,
  log: (line: string) => void,
): void {
  const dir = installDir(s, version);
  if (fs.existsSync(path.join(dir, '.complete'))) return;
  log(`registry: fetching Apicurio Registry ${version} from Maven Central`);
  const download = path.join(s.dir, 'download');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(download, { recursive: true });
  fs.mkdirSync(dir, { recursive: true });
  mvn([
    '-f',
    path.join(stackDir, 'pom.xml'),
    'dependency:copy',
    `-Dartifact=io.apicurio:apicurio-registry-app:${version}:tar.gz:all`,
    `-DoutputDirectory=${download}`,
  ]);
  const archive = path.join(download, `apicurio-registry-app-${version}-all.tar.gz`);
  run('tar', ['-xzf', archive, '-C', dir]);
  fs.rmSync(download, { recursive: true, force: true });
  fs.writeFileSync(path.join(dir, '.complete'), `${version}\n`);
}

function runnerJar(dir: string): string {
  const stack = [dir];
  while (stack.length) {
    const current = stack.pop()!;
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory() && entry.name !== 'lib') stack.push(full);
      else if (entry.name === 'quarkus-run.jar' || entry.name.endsWith('-runner.jar')) return full;
    }
  }
  throw new Error(`registry: no quarkus-run.jar or *-runner.jar under ${dir}`);
}

export const registryDatabase = 'shoal_registry';

function storageArgs(storage: RegistrySettings['storage'], pg: PostgresSettings): string[] {
  if (storage === 'mem') return [];
  const url = new URL(pg.url);
  return [
    '-Dapicurio.storage.kind=sql',
    '-Dapicurio.storage.sql.kind=postgresql',
    `-Dapicurio.datasource.url=jdbc:postgresql://${pg.host}:${pg.port}/${registryDatabase}`,
    `-Dapicurio.datasource.username=${decodeURIComponent(url.username) || 'postgres'}`,
    `-Dapicurio.datasource.password=${decodeURIComponent(url.password)}`,
  ];
}

const runInfoFile = (s: RegistrySettings) => path.join(s.dir, 'registry.json');

export interface RegistryRunInfo {
  version: string;
  java: number;
  storage: RegistrySettings['storage'];
}

/** How the running registry was started (written at start; its storage cannot be asked over HTTP). */
export function registryRunInfo(s: RegistrySettings): RegistryRunInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(runInfoFile(s), 'utf8')) as RegistryRunInfo;
  } catch {
    return undefined;
  }
}

export function startRegistry(
  s: RegistrySettings,
  choice: RegistryChoice,
  pg: PostgresSettings,
): number {
  const jar = runnerJar(installDir(s, choice.version));
  const storage = choice.version === REGISTRY_PRIMARY.version ? s.storage : 'mem';
  fs.writeFileSync(
    runInfoFile(s),
    JSON.stringify({
      version: choice.version,
      java: choice.java.major,
      storage,
    } satisfies RegistryRunInfo),
  );
  return startDetached(
    registryProcess(s),
    choice.java.bin,
    [
      registryProcess(s).marker,
      '-Xms128m',
      '-Xmx512m',
      '-Dquarkus.http.host=127.0.0.1',
      `-Dquarkus.http.port=${s.port}`,
      '-Dquarkus.management.host=127.0.0.1',
      '-Dquarkus.http.access-log.enabled=false',
      `-Dquarkus.management.port=${s.managementPort}`,
      ...storageArgs(storage, pg),
      '-jar',
      jar,
    ],
    { cwd: path.dirname(jar) },
  );
}

export async function registryAnswers(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/subjects`, { signal: AbortSignal.timeout(2000) });
    return response.ok && Array.isArray(await response.json());
  } catch {
    return false;
  }
}

/** What the running registry says it is (from its system info endpoint), for `stack status`. */
export async function registryInfo(port: number): Promise<string | undefined> {
  for (const endpoint of ['/apis/registry/v3/system/info', '/apis/registry/v2/system/info']) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}${endpoint}`, {
        signal: AbortSignal.timeout(2000),
      });
      if (response.ok) {
        const info = (await response.json()) as { name?: string; version?: string };
        return `${info.name ?? 'Apicurio Registry'} ${info.version ?? ''}`.trim();
      }
    } catch {
      /* try the other API generation */
    }
  }
  return undefined;
}

export const registryLog = (s: RegistrySettings) => logFile(registryProcess(s));
export const registryPid = (s: RegistrySettings) => runningPid(registryProcess(s));
