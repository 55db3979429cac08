import type { KafkaMessage } from 'kafkajs';

/**
 * What a rebuild (`shoal rebuild <service>`, rebuild.ts) lets the consumer apply: each partition up
 * to exactly its stop offset (the live group's stored offset, read in the comparison's snapshot),
 * never a record past it, and across partitions in record-timestamp order, so a race the live
 * service saw between topics (an entity change against a message naming the entity) is decided by
 * when each was produced, not by which fetch happened to come first.
 *
 * A partition may apply a record when no unfinished partition of another topic has an earlier one
 * waiting, and none of its own topic one more than `SAME_TOPIC_SLACK_MS` earlier; one whose next
 * record is not yet known (between fetches) makes the others wait. Partitions of one topic hold
 * different keys, which the live service too applies in whatever interleaving its fetches gave: they
 * keep to the time order only roughly, so a rebuild applies chunks of a second's records, not of the
 * few records one producer request wrote. A wait gives up after `waitMs` (the consumer asks again,
 * holding no slot meanwhile, so other partitions' lanes fetch and apply: lanes.ts). `admit` blocks
 * only on other partitions; nothing here touches PostgreSQL.
 */
export interface ApplyGate {
  /**
   * The leading messages of `messages` that may be applied now, after waiting for other partitions
   * as needed; `[]` when none ever will (the partition reached its stop); `undefined` when the
   * caller should ask again (another partition's next record is not known yet).
   */
  admit(
    topic: string,
    partition: number,
    messages: KafkaMessage[],
  ): Promise<KafkaMessage[] | undefined>;
  /** The partition applied everything before `nextOffset`. */
  applied(topic: string, partition: number, nextOffset: number): void;
}

/** How far a partition may run ahead of another of its own topic, in record time. */
export const SAME_TOPIC_SLACK_MS = 1000;

interface PartitionState {
  topic: string;
  stop: number;
  /** The timestamp of the first record it waits to apply (or is applying); undefined: not known. */
  head?: number;
  done: boolean;
}

export class RebuildGate implements ApplyGate {
  private readonly partitions = new Map<string, PartitionState>();
  private waiters: (() => void)[] = [];
  private settle!: () => void;
  /** Resolves once every partition applied everything before its stop offset. */
  readonly finished = new Promise<void>((resolve) => (this.settle = resolve));

  /**
   * `stops`: per topic and partition, the offset to stop before; `lowWatermarks`: where each
   * partition's log starts now (one whose stop is not past it has nothing to apply).
   */
  constructor(
    stops: { topic: string; partition: number; stop: number; low: number }[],
    private readonly waitMs = 500,
  ) {
    for (const { topic, partition, stop, low } of stops)
      this.partitions.set(`${topic}:${partition}`, { topic, stop, done: stop <= low });
    this.checkFinished();
  }

  /** Each partition's stop, for the log. */
  stops(): Record<string, number> {
    return Object.fromEntries([...this.partitions].map(([tp, s]) => [tp, s.stop]));
  }

  async admit(topic: string, partition: number, messages: KafkaMessage[]) {
    const state = this.stateOf(topic, partition);
    const below = messages.filter((m) => Number(m.offset) < state.stop);
    if (below.length === 0) {
      this.finish(state);
      return [];
    }
    state.head = Number(below[0]!.timestamp);
    this.changed();
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      const bound = this.boundFor(state);
      if (bound !== undefined) {
        const later = below.findIndex((m) => Number(m.timestamp) > bound);
        const admitted = later === -1 ? below : below.slice(0, later);
        if (admitted.length > 0) return admitted;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        state.head = undefined;
        this.changed();
        return undefined;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  applied(topic: string, partition: number, nextOffset: number): void {
    const state = this.stateOf(topic, partition);
    state.head = undefined;
    if (nextOffset >= state.stop) this.finish(state);
    else this.changed();
  }

  private stateOf(topic: string, partition: number): PartitionState {
    const state = this.partitions.get(`${topic}:${partition}`);
    if (!state) throw new Error(`rebuild: no stop offset for ${topic}:${partition}`);
    return state;
  }

  /** The latest timestamp `state` may apply (from the others' heads); undefined while one is unknown. */
  private boundFor(state: PartitionState): number | undefined {
    let bound = Infinity;
    for (const other of this.partitions.values()) {
      if (other === state || other.done) continue;
      if (other.head === undefined) return undefined;
      bound = Math.min(bound, other.head + (other.topic === state.topic ? SAME_TOPIC_SLACK_MS : 0));
    }
    return bound;
  }

  private finish(state: PartitionState): void {
    state.done = true;
    state.head = undefined;
    this.changed();
    this.checkFinished();
  }

  private checkFinished(): void {
    if ([...this.partitions.values()].every((s) => s.done)) this.settle();
  }

  private changed(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
