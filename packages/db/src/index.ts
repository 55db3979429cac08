export * from './pool.js';
export * from './migrate.js';
export * from './schema.js';
export * from './text.js';
