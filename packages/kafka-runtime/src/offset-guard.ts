import { createHash } from 'node:crypto';
import type { Admin, KafkaMessage } from 'kafkajs';
import { TransientError } from './errors.js';
import type { StoredOffset } from './store.js';

/**
 * Step 0 of a chunk, in its transaction after the partition's offset row is locked: does the
 * fetched chunk line up with PostgreSQL's next offset, and is the log still the one PostgreSQL
 * applied? kafkajs' seek on assignment races the first fetch, Kafka's committed offsets are only
 * for lag tooling, and a topic re-created, a Kafka reset or a database restored beside another
 * cluster leaves PostgreSQL holding offsets of another log. The guard never skips silently:
 *
 * - Records below the next offset were applied: dropped.
 * - A fetch that starts past the next offset is sought back; a gap is accepted only below the
 *   log's low watermark (retention deleted it), with a warning. Ahead again before a chunk applied
 *   since the last seek back, the chunk says so (`repeated`) and the consumer treats it as a
 *   transient failure, which escalates past its deadline.
 * - On assignment (and whenever a fetch starts below the next offset) the log is verified: the
 *   next offset must not be past the high watermark, and the record at next − 1 must be the one
 *   last applied (`recordIdentity`, stored with the offset). A mismatch halts the partition. A
 *   partition with nothing stored has nothing to verify: its first chunk's offset is this log's.
 *
 * Blocks on: the Kafka admin client (watermarks) when it verifies or meets a gap.
 * Throws: the admin client's errors (transient by `classify`; the chunk is retried).
 * Rebalance: `assigned` forgets everything about a partition, so a partition revoked and
 * assigned again is verified again and gets its quiet seek back again.
 */

export type GuardDecision =
  /** Apply the records from `from` on; `gone` names offsets retention deleted before they were applied. */
  | { action: 'apply'; from: number; gone?: { from: number; to: number } }
  | { action: 'seek'; to: number; repeated: boolean }
  | { action: 'halt'; reason: string };

/** Which record this is, as far as its bytes tell: Kafka timestamp and a digest of key and value. */
export function recordIdentity(record: Pick<KafkaMessage, 'timestamp' | 'key' | 'value'>): string {
  const hash = createHash('sha256');
  for (const part of [record.key, record.value]) {
    // length-prefixed, so key and value cannot trade bytes; -1 for null
    hash.update(String(part ? part.length : -1)).update(':');
    if (part) hash.update(part);
  }
  return `${record.timestamp}:${hash.digest('hex').slice(0, 32)}`;
}

interface PartitionState {
  /** The log is to be verified against the stored offset and identity before anything applies. */
  verify: boolean;
  /** Sought back once since assignment (the race with the assignment's seek is expected once). */
  soughtBack: boolean;
  /** Where a partition with no stored offset starts, fixed at its first use after assignment. */
  start?: number;
}

export class OffsetGuard {
  private readonly partitions = new Map<string, PartitionState>();

  constructor(
    private readonly admin: Admin,
    private readonly startFrom: 'earliest' | 'latest',
  ) {}

  /**
   * A partition was (re)assigned, or resumed after a reset: forget its state (verify it again, seek
   * back quietly once) and return where to seek: the record before the next offset when there is
   * one to verify, else the next offset, else where a partition never applied starts.
   */
  async assigned(
    topic: string,
    partition: number,
    stored: { next: number; lastRecordId: string | null } | undefined,
  ): Promise<number> {
    const state: PartitionState = { verify: true, soughtBack: false };
    this.partitions.set(key(topic, partition), state);
    if (!stored) return this.startOf(topic, partition, state);
    return stored.lastRecordId !== null && stored.next > 0 ? stored.next - 1 : stored.next;
  }

  /**
   * Whether the partition's log was verified since its assignment: a chunk starting at the stored
   * next offset then applies without the admin client (chunk.ts moves the offset as it locks it).
   */
  isVerified(topic: string, partition: number): boolean {
    return this.partitions.get(key(topic, partition))?.verify === false;
  }

  /** A chunk applied: the next gap is a new one. */
  applied(topic: string, partition: number): void {
    const state = this.partitions.get(key(topic, partition));
    if (state) state.soughtBack = false;
  }

  async check(
    topic: string,
    partition: number,
    stored: StoredOffset,
    records: KafkaMessage[],
  ): Promise<GuardDecision> {
    const state = this.stateOf(topic, partition);
    const first = Number(records[0]!.offset);
    let expected = stored.next ?? (await this.startOf(topic, partition, state));
    let watermarks: { low: number; high: number } | undefined;

    if (stored.next !== undefined && (state.verify || first < stored.next)) {
      const next = stored.next;
      watermarks = await this.watermarks(topic, partition);
      if (next > watermarks.high)
        return {
          action: 'halt',
          reason: `the stored next offset ${next} is past the end of the log (high watermark ${watermarks.high}): was the topic re-created or Kafka reset?`,
        };
      const previous = next - 1;
      if (stored.lastRecordId !== null && previous >= watermarks.low) {
        const record = records.find((r) => Number(r.offset) === previous);
        if (record) {
          const found = recordIdentity(record);
          if (found !== stored.lastRecordId)
            return {
              action: 'halt',
              reason: `the record at offset ${previous} is not the one last applied there (stored ${stored.lastRecordId}, found ${found}): was the topic re-created, Kafka reset or the database restored beside another cluster?`,
            };
          state.verify = false;
        } else if (first > previous) {
          expected = previous; // the record to compare is behind this fetch: fetch it
        }
        // else this chunk ends before it; every record in it is below the next offset
      } else {
        state.verify = false; // nothing to compare: identity unknown, or retention took the record
      }
    }

    if (first > expected) {
      const { low } = watermarks ?? (await this.watermarks(topic, partition));
      const target = Math.max(expected, low);
      if (first > target) {
        const repeated = state.soughtBack;
        state.soughtBack = true;
        return { action: 'seek', to: target, repeated };
      }
      return { action: 'apply', from: first, gone: { from: expected, to: first - 1 } };
    }
    // nothing applied here before: what this chunk stores is this log's, nothing to verify next
    if (stored.next === undefined) state.verify = false;
    return { action: 'apply', from: stored.next ?? expected };
  }

  private stateOf(topic: string, partition: number): PartitionState {
    let state = this.partitions.get(key(topic, partition));
    if (!state)
      this.partitions.set(key(topic, partition), (state = { verify: true, soughtBack: false }));
    return state;
  }

  private async startOf(topic: string, partition: number, state: PartitionState): Promise<number> {
    if (state.start === undefined) {
      const { low, high } = await this.watermarks(topic, partition);
      state.start = this.startFrom === 'latest' ? high : low;
    }
    return state.start;
  }

  private async watermarks(
    topic: string,
    partition: number,
  ): Promise<{ low: number; high: number }> {
    const offsets = await this.admin.fetchTopicOffsets(topic);
    const p = offsets.find((o) => o.partition === partition);
    if (!p) throw new TransientError(`topic ${topic} has no partition ${partition} (yet)`);
    return { low: Number(p.low), high: Number(p.high) };
  }
}

const key = (topic: string, partition: number) => `${topic}:${partition}`;
