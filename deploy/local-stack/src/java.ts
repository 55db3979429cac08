import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface Java {
  bin: string;
  major: number;
}

function majorOf(javaBin: string): number | undefined {
  const home = path.dirname(path.dirname(javaBin));
  try {
    const release = fs.readFileSync(path.join(home, 'release'), 'utf8');
    const m = /JAVA_VERSION="(\d+)/.exec(release);
    if (m) return Number(m[1]);
  } catch {
    /* no release file: ask the binary */
  }
  const out = spawnSync(javaBin, ['-version'], { encoding: 'utf8' });
  const m = /version "(\d+)/.exec(`${out.stderr}${out.stdout}`);
  return m ? Number(m[1]) : undefined;
}

/** Every Java on this machine: JAVA_HOME, the one on PATH, and each JDK under /usr/lib/jvm. */
export function javas(): Java[] {
  const candidates = new Set<string>();
  if (process.env.JAVA_HOME) candidates.add(path.join(process.env.JAVA_HOME, 'bin', 'java'));
  const onPath = spawnSync('sh', ['-c', 'command -v java'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) candidates.add(fs.realpathSync(onPath));
  try {
    for (const jdk of fs.readdirSync('/usr/lib/jvm'))
      candidates.add(path.join('/usr/lib/jvm', jdk, 'bin', 'java'));
  } catch {
    /* no /usr/lib/jvm */
  }
  const found = new Map<string, Java>();
  for (const bin of candidates) {
    if (!fs.existsSync(bin)) continue;
    const real = fs.realpathSync(bin);
    const major = majorOf(real);
    if (major !== undefined && !found.has(real)) found.set(real, { bin: real, major });
  }
  return [...found.values()];
}

/** The lowest Java at or above `min` (Kafka wants 17; the registry's current release 21). */
export function findJava(min: number, max = Infinity): Java | undefined {
  return javas()
    .filter((j) => j.major >= min && j.major <= max)
    .sort((a, b) => a.major - b.major)[0];
}
