import type { CommandRow, IssueRow } from './decide/rows.js';

/** What one decide transaction recorded: its outcomes, and each issue as the batch left it. */
export interface DecidedBatch {
  commands: readonly CommandRow[];
  issue(id: number): IssueRow | undefined;
}

/**
 * Decide's outcomes handed to the agent API of the same process before their transaction commits,
 * with the transaction's id (`txid_current()`): the API answers from them once the outcomes'
 * NOTIFY says that transaction committed (api/waiter.ts), instead of reading them back. Nothing
 * here is trusted before that notification.
 */
export class DecidedHere {
  private readonly listeners = new Set<(txid: string, batch: DecidedBatch) => void>();

  listen(listener: (txid: string, batch: DecidedBatch) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  offer(txid: string, batch: DecidedBatch): void {
    for (const listener of this.listeners) listener(txid, batch);
  }
}
