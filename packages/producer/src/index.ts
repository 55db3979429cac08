import {
  Codec,
  createRegistry,
  messageIdHeader,
  occurrenceKey,
  statusChangeId,
  topicNames,
  type LifecycleCommand,
  type MessageTypes,
  type Occurrence,
  type StatusChange,
  type TopicKey,
} from '@shoal/contracts';
import type { KafkaSecurity, RegistryAuth } from '@shoal/config/connections';
import { Kafka, logLevel, type Producer, type RetryOptions } from 'kafkajs';

export { ContractError } from '@shoal/contracts';
export type { LifecycleCommand, Occurrence, StatusChange };

export interface ShoalProducerOptions {
  brokers: string[];
  /** Kafka TLS and SASL (`kafkaConnection` in @shoal/config/connections); none by default. */
  security?: KafkaSecurity;
  /** Confluent-compatible API, e.g. http://127.0.0.1:8081/apis/ccompat/v7 */
  registryUrl: string;
  /** The registry's HTTP basic auth, when it asks for one. */
  registryAuth?: RegistryAuth;
  /** Topic-name prefix (several pipelines on one cluster); default none. */
  namespace?: string;
  clientId?: string;
  /** How long a message waits for others to share its request (default 5 ms). */
  lingerMs?: number;
  /** A batch is sent at once when it reaches this many messages (default 500). */
  maxBatch?: number;
  retry?: RetryOptions;
}

export interface Published {
  /** The message id consumers deduplicate on (`statusChangeId` in @shoal/contracts says how a status change gets one). */
  id: string;
  topic: string;
}

interface Pending {
  topic: string;
  message: { key: string; value: Buffer; headers: Record<string, string> };
  resolve: () => void;
  reject: (error: unknown) => void;
}

const MESSAGE_ID = 'shoal.message-id';
const TRACE_ID = 'shoal.trace-id';

/**
 * Publishes occurrences and status changes as upstream services do, and lifecycle commands as the
 * agent API does: validated against the topic schema first (a ContractError naming every bad
 * field, and nothing sent), encoded with the registered schema, keyed as the topic is
 * (`project_id:fingerprint[0]`; a command by its issue id), through an idempotent producer
 * (acks=all), batched with a short linger. A publish resolves once the broker has acknowledged the
 * message.
 */
export class ShoalProducer {
  private readonly producer: Producer;
  private readonly codec: Codec;
  private readonly topics: Record<TopicKey, string>;
  private connecting?: Promise<void>;
  private queue: Pending[] = [];
  private timer?: NodeJS.Timeout;
  private inFlight = new Set<Promise<void>>();
  /** Publishes accepted but still encoding; flush waits for them to reach the queue. */
  private preparing = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly options: ShoalProducerOptions) {
    this.topics = topicNames(options.namespace ?? '');
    this.codec = new Codec(createRegistry(options.registryUrl, options.registryAuth), this.topics);
    this.producer = new Kafka({
      ...options.security,
      brokers: options.brokers,
      clientId: options.clientId ?? 'shoal-producer',
      logLevel: logLevel.ERROR,
      retry: options.retry,
    }).producer({ idempotent: true, maxInFlightRequests: 1 });
  }

  publishOccurrence(occurrence: Occurrence): Promise<Published> {
    return this.publish(
      'occurrences',
      occurrence,
      occurrenceKey(occurrence),
      occurrence.id,
      messageIdHeader('occurrences', occurrence.id),
      occurrence.shoal?.trace_id,
    );
  }

  /** A lifecycle command, keyed by its issue id; its message id is its `command_id` (decide applies it once). */
  publishLifecycleCommand(command: LifecycleCommand): Promise<Published> {
    return this.publish(
      'lifecycleCommands',
      command,
      String(command.issue_id),
      command.command_id,
      command.command_id,
      command.trace_id,
    );
  }

  /**
   * `idempotencyId` is the id to use when the change has neither `id` nor `update_date` (e.g.
   * `idempotentItemId(key, index)` from a request's idempotency key); without it such a change
   * gets a fresh id.
   */
  publishStatusChange(change: StatusChange, idempotencyId?: string): Promise<Published> {
    const id = statusChangeId(change, idempotencyId);
    return this.publish(
      'statusChanges',
      change,
      occurrenceKey(change),
      id,
      messageIdHeader('statusChanges', id),
      change.shoal?.trace_id,
    );
  }

  private async publish<K extends 'occurrences' | 'statusChanges' | 'lifecycleCommands'>(
    topicKey: K,
    value: MessageTypes[K],
    key: string,
    id: string,
    messageId: string,
    traceId?: string,
  ): Promise<Published> {
    if (this.closed) throw new Error('this producer is closed');
    const topic = this.topics[topicKey];
    const headers: Record<string, string> = { [MESSAGE_ID]: messageId };
    if (traceId) headers[TRACE_ID] = traceId;
    // settles once the message is queued (or refused: a ContractError, and nothing queued), so a
    // flush can wait for publishes that were still encoding
    const queued = this.codec.encode(topicKey, value).then((encoded) => ({
      acked: new Promise<void>((resolve, reject) => {
        this.queue.push({
          topic,
          message: { key, value: encoded, headers },
          resolve,
          reject,
        });
        if (this.queue.length >= (this.options.maxBatch ?? 500)) this.sendQueued();
        else this.timer ??= setTimeout(() => this.sendQueued(), this.options.lingerMs ?? 5);
      }),
    }));
    this.preparing.add(queued);
    const { acked } = await queued.finally(() => this.preparing.delete(queued));
    await acked;
    return { id, topic };
  }

  private sendQueued(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const byTopic = new Map<string, Pending['message'][]>();
    for (const p of batch) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p.message]);
    const sending = (async () => {
      this.connecting ??= this.producer.connect().catch((error: unknown) => {
        this.connecting = undefined;
        throw error;
      });
      await this.connecting;
      await this.producer.sendBatch({
        acks: -1,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    })().then(
      () => batch.forEach((p) => p.resolve()),
      (error: unknown) => batch.forEach((p) => p.reject(error)),
    );
    this.inFlight.add(sending);
    void sending.finally(() => this.inFlight.delete(sending));
  }

  /** Sends what is queued and waits for every acknowledgement. */
  async flush(): Promise<void> {
    await Promise.allSettled(this.preparing);
    this.sendQueued();
    await Promise.all(this.inFlight);
  }

  /** Flushes, then disconnects; publishing afterwards throws. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    if (this.connecting) await this.producer.disconnect();
  }
}

export function createProducer(options: ShoalProducerOptions): ShoalProducer {
  return new ShoalProducer(options);
}
