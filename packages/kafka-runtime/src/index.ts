export * from './errors.js';
export * from './policy.js';
export * from './limits.js';
export * from './message.js';
export * from './dead-letter.js';
export * from './lookups.js';
export * from './relay.js';
export { RelayThread, type RelayThreadSettings } from './relay-thread.js';
export * from './handler.js';
export * from './consumer.js';
export * from './service.js';
export * from './scheduled.js';
export { recordIdentity } from './offset-guard.js';
export { resetOffset } from './store.js';
export {
  deleteInBatches,
  type PruneBatch,
  type Pruned,
  type ServiceRetention,
} from './retention.js';
export { discardParkedHead, expireParkedNow } from './parking.js';
export { settleHeldNow } from './held.js';
export { DISCARD_HEADER, discardedHeadOf } from './discard-marker.js';
export * from './groups.js';
export { rebuildModeFromEnv, type RebuildMode } from './rebuild.js';
export { RebuildGate, type ApplyGate } from './rebuild-gate.js';
