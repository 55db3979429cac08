import type * as Generated from './generated/messages.js';
import type { TopicKey } from './topics.js';

export type * from './generated/messages.js';

export interface MessageTypes {
  occurrences: Generated.Occurrence;
  statusChanges: Generated.StatusChange;
  groupEvents: Generated.GroupEvent;
  lifecycleCommands: Generated.LifecycleCommand;
  lifecycle: Generated.LifecycleEvent;
  entityChanges: Generated.EntityChange;
  incidents: Generated.IncidentEvent;
  dedupCommands: Generated.DedupCommand;
  regressionCommands: Generated.RegressionCommand;
  groupingCommands: Generated.GroupingCommand;
}

// compile-time check that every topic has a message type and no more
type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const _everyTopicTyped: Exact<keyof MessageTypes, TopicKey> = true;
void _everyTopicTyped;

/** The message key the design prescribes: `project_id:primary fingerprint`. Consumers never parse it. */
export function occurrenceKey(
  message: Pick<Generated.Occurrence, 'project_id' | 'fingerprint'>,
): string {
  return `${message.project_id}:${message.fingerprint[0]}`;
}
