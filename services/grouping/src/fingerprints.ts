import { createHash } from 'node:crypto';
import type { Occurrence, StatusChange } from '@shoal/contracts';

/** A fingerprint's group hash (Sentry hashes fingerprints the same way: md5 hex). */
export const hashOf = (fingerprint: string) => createHash('md5').update(fingerprint).digest('hex');

export const primaryHash = (message: Pick<Occurrence | StatusChange, 'fingerprint'>) =>
  hashOf(message.fingerprint[0]);

export const environmentOf = (o: Occurrence): string | null =>
  o.shoal?.environment ?? (typeof o.event?.environment === 'string' ? o.event.environment : null);

/** `P<project>-<number in base 36>`, e.g. P7-1A */
export const shortIdOf = (projectId: number, number: number) =>
  `P${projectId}-${number.toString(36).toUpperCase()}`;
