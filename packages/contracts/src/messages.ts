import type {
  EntityChange,
  GroupEvent,
  LifecycleCommand,
  LifecycleEvent,
  Occurrence,
  StatusChange,
} from './generated/messages.js';
import type { TopicKey } from './topics.js';

export type {
  EntityChange,
  GroupEvent,
  LifecycleCommand,
  LifecycleEvent,
  Occurrence,
  StatusChange,
};

export interface MessageTypes {
  occurrences: Occurrence;
  statusChanges: StatusChange;
  groupEvents: GroupEvent;
  lifecycleCommands: LifecycleCommand;
  lifecycle: LifecycleEvent;
  entityChanges: EntityChange;
}

// compile-time check that every topic has a message type and no more
type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const _everyTopicTyped: Exact<keyof MessageTypes, TopicKey> = true;
void _everyTopicTyped;

/** The message key the design prescribes: `project_id:primary fingerprint`. Consumers never parse it. */
export function occurrenceKey(message: Pick<Occurrence, 'project_id' | 'fingerprint'>): string {
  return `${message.project_id}:${message.fingerprint[0]}`;
}
