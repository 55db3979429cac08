import { spawnSync } from 'node:child_process';
import { run } from './processes.js';

export function requireMaven(): void {
  const probe = spawnSync('mvn', ['-v'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      'Maven (mvn) is needed to fetch Apache Kafka and Apicurio Registry from Maven Central; install it (apt-get install maven).',
    );
  }
}

/** Runs Maven in batch mode; downloads land in Maven's own local repository, so a second run fetches nothing. */
export function mvn(args: string[], cwd?: string): string {
  requireMaven();
  return run('mvn', ['-B', '-q', '-ntp', ...args], { cwd });
}
