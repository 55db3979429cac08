export * from './logger.js';
export * from './metrics.js';
export * from './server.js';
export * from './ops-plugin.js';
export * from './error-tracker.js';
