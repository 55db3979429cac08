import fs from 'node:fs';
import path from 'node:path';
import { schemasDir, type TopicKey } from '../src/index.js';

const prefixes: Record<string, TopicKey> = {
  occurrence: 'occurrences',
  'status-change': 'statusChanges',
  'group-event': 'groupEvents',
  'lifecycle-command': 'lifecycleCommands',
  'lifecycle-event': 'lifecycle',
  'entity-change': 'entityChanges',
  'incident-event': 'incidents',
  'dedup-command': 'dedupCommands',
  'regression-command': 'regressionCommands',
  'grouping-command': 'groupingCommands',
};

/** Every file under schemas/examples, with the topic its name says it belongs to. */
export function examples(): { file: string; key: TopicKey; value: Record<string, unknown> }[] {
  const dir = path.join(schemasDir, 'examples');
  return fs.readdirSync(dir).map((file) => {
    const key = prefixes[file.split('.')[0]!];
    if (!key)
      throw new Error(
        `schemas/examples/${file}: name must start with one of ${Object.keys(prefixes).join(', ')}`,
      );
    return {
      file,
      key,
      value: JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>,
    };
  });
}

export const example = (file: string) => examples().find((e) => e.file === file)!.value;
