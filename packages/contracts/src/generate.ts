import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';
import { loadSchema, topicCatalog, topicKeys } from './topics.js';

export const generatedTypesFile = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'generated',
  'messages.ts',
);

/** The TypeScript types of every topic's message, generated from `schemas/` (one source of truth). */
export async function generateTypes(): Promise<string> {
  const parts = await Promise.all(
    topicKeys.map((key) =>
      compile(
        structuredClone(loadSchema(key)) as Parameters<typeof compile>[0],
        topicCatalog[key].type,
        {
          bannerComment: '',
          strictIndexSignatures: true,
          format: true,
          style: { singleQuote: true, printWidth: 100 },
        },
      ),
    ),
  );
  return [
    '// Generated from schemas/*.schema.json by `npm run contracts:generate`; do not edit by hand.',
    '// A test fails when this file and the schemas drift apart.',
    '',
    ...parts,
  ].join('\n');
}
