export * from './topics.js';
export * from './errors.js';
export * from './messages.js';
export * from './validation.js';
export * from './registry.js';
export * from './admin.js';
export * from './message-ids.js';
