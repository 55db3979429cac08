import type { KafkaMessage } from 'kafkajs';

/**
 * Fetching while applying. kafkajs fetches again only once every batch of its last fetch is
 * handled, so a consumer that applies inside `eachBatch` makes every partition wait for the
 * slowest partition's transaction before it sees a new record. Instead `eachBatch` queues a
 * batch's records in its partition's lane and returns; each lane applies its records in offset
 * order, one chunk at a time, while kafkajs fetches the next. At most `concurrency` lanes apply
 * at once (each chunk is a transaction on a pooled connection), taking turns chunk by chunk.
 *
 * A lane holding `highWater` records or more pauses its partition until it is down to half.
 * A lane the consumer pauses for its own reasons (a retry's backoff, a halt, a rebuild's stop) is
 * `blocked`: it drops what it holds and what arrives until it is unblocked, and only its owner
 * resumes the partition. PostgreSQL stays the truth on offsets: a chunk's offset guard
 * (offset-guard.ts) drops or seeks back whatever a lane holds that does not line up with it.
 */

export interface Lane {
  readonly topic: string;
  readonly partition: number;
  /** The partition's high watermark from its latest fetch (for the lag gauge). */
  highWatermark: string;
  /** The next up to `n` records, left in the lane. */
  peek(n: number): KafkaMessage[];
  /**
   * Takes an applied chunk (a prefix of what `peek` gave) off the lane; nothing when the lane was
   * cleared meanwhile (it may hold records fetched since, which are not the chunk's).
   */
  take(chunk: KafkaMessage[]): void;
  /** Drops everything the lane holds (the consumer sought the partition). */
  clear(): void;
  readonly size: number;
}

export interface LaneOptions {
  concurrency: number;
  highWater: number;
  pause(topic: string, partition: number): void;
  resume(topic: string, partition: number): void;
  /**
   * Applies (part of) what the lane holds, taking it off the lane, or clears the lane; called
   * with one of the `concurrency` slots held, never twice at once for one lane.
   */
  applyNext(lane: Lane): Promise<void>;
  /** Runs before a slot is taken (a rebuild's gate waits here for other partitions). */
  beforeSlot?(lane: Lane): Promise<void>;
  /** A lane's loop failed outside `applyNext`'s own handling: the consumer stops. */
  onError(error: unknown): void;
}

class PartitionLane implements Lane {
  private records: KafkaMessage[] = [];
  private head = 0;
  highWatermark = '-1';
  /** Paused because it held `highWater` records (resumed by the lane when it drains). */
  full = false;
  blocked = false;
  /** A run is applying the lane; cleared in the same step as the run's last look at the lane. */
  active = false;
  /** The current or last run (what `stop` waits for). */
  running: Promise<void> = Promise.resolve();

  constructor(
    readonly topic: string,
    readonly partition: number,
    private readonly resume: () => void,
  ) {}

  get size(): number {
    return this.records.length - this.head;
  }

  push(records: KafkaMessage[]): void {
    if (this.head > 0 && this.head >= this.records.length / 2) {
      this.records = this.records.slice(this.head);
      this.head = 0;
    }
    for (const record of records) this.records.push(record);
  }

  peek(n: number): KafkaMessage[] {
    return this.records.slice(this.head, this.head + n);
  }

  take(chunk: KafkaMessage[]): void {
    if (this.records[this.head] !== chunk[0]) return;
    this.head = Math.min(this.head + chunk.length, this.records.length);
    if (this.head === this.records.length) this.clearRecords();
  }

  /** Drops what the lane holds; a partition paused for being full is resumed, unless blocked. */
  clear(): void {
    this.clearRecords();
    if (this.full && !this.blocked) this.resume();
    this.full = false;
  }

  /** Resumes the partition once the lane is down to `lowWater` records. */
  drained(lowWater: number): void {
    if (this.full && this.size <= lowWater) {
      this.full = false;
      this.resume();
    }
  }

  private clearRecords(): void {
    this.records = [];
    this.head = 0;
  }
}

export class PartitionLanes {
  private readonly lanes = new Map<string, PartitionLane>();
  private freeSlots: number;
  private readonly slotWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly options: LaneOptions) {
    this.freeSlots = options.concurrency;
  }

  /** Queues a fetched batch's records and starts the lane if it is idle. */
  push(topic: string, partition: number, records: KafkaMessage[], highWatermark: string): void {
    const lane = this.laneOf(topic, partition);
    if (this.stopped || lane.blocked) return;
    lane.push(records);
    lane.highWatermark = highWatermark;
    if (!lane.full && lane.size >= this.options.highWater) {
      lane.full = true;
      this.options.pause(topic, partition);
    }
    // not `running`'s settling, which comes a few microtasks after the run's last look at the
    // lane: records pushed between the two would wait for the next push
    if (!lane.active) {
      lane.active = true;
      lane.running = this.run(lane);
    }
  }

  /** Whether batches for this partition are dropped (see `block`). */
  isBlocked(topic: string, partition: number): boolean {
    return this.lanes.get(key(topic, partition))?.blocked ?? false;
  }

  /** Drops what the lane holds (the consumer sought the partition). */
  clear(topic: string, partition: number): void {
    this.lanes.get(key(topic, partition))?.clear();
  }

  /** The consumer paused the partition: drop what the lane holds and what arrives until `unblock`. */
  block(topic: string, partition: number): void {
    const lane = this.laneOf(topic, partition);
    lane.blocked = true;
    lane.clear();
  }

  unblock(topic: string, partition: number): void {
    this.laneOf(topic, partition).blocked = false;
  }

  /**
   * The assignment changes: drop what every lane holds (a chunk being applied finishes; the offset
   * guard settles it with whoever owns the partition next) and forget the lanes of partitions not
   * kept. Blocks stay with partitions kept (kafkajs keeps them paused).
   */
  reassign(kept: (topic: string, partition: number) => boolean): void {
    for (const [k, lane] of this.lanes) {
      lane.clear();
      if (!kept(lane.topic, lane.partition)) {
        lane.blocked = false;
        if (!lane.active) this.lanes.delete(k);
      }
    }
  }

  /** Stops taking records; resolves when no lane is applying. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const lane of this.lanes.values()) lane.clear();
    await Promise.all([...this.lanes.values()].map((lane) => lane.running));
  }

  private laneOf(topic: string, partition: number): PartitionLane {
    let lane = this.lanes.get(key(topic, partition));
    if (!lane) {
      lane = new PartitionLane(topic, partition, () => this.options.resume(topic, partition));
      this.lanes.set(key(topic, partition), lane);
    }
    return lane;
  }

  private async run(lane: PartitionLane): Promise<void> {
    try {
      while (!this.stopped && lane.size > 0) {
        await this.options.beforeSlot?.(lane);
        if (this.stopped || lane.size === 0) break;
        await this.acquire();
        try {
          if (!this.stopped && lane.size > 0) await this.options.applyNext(lane);
        } finally {
          this.release();
        }
        lane.drained(this.options.highWater / 2);
      }
    } catch (error) {
      this.options.onError(error);
    } finally {
      lane.active = false;
    }
  }

  private async acquire(): Promise<void> {
    if (this.freeSlots > 0) {
      this.freeSlots--;
      return;
    }
    await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
  }

  /** Hands the slot to the longest waiter, so lanes take turns chunk by chunk. */
  private release(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.freeSlots++;
  }
}

const key = (topic: string, partition: number) => `${topic}:${partition}`;
