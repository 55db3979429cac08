import fs from 'node:fs';
import { generateTypes, generatedTypesFile } from '../generate.js';

if (process.argv.includes('--help')) {
  process.stdout.write(
    'Usage: npm run contracts:generate\n\nRegenerates packages/contracts/src/generated/messages.ts from schemas/*.schema.json.\n',
  );
  process.exit(0);
}
fs.writeFileSync(generatedTypesFile, await generateTypes());
process.stdout.write(`wrote ${generatedTypesFile}\n`);
