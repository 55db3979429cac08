/**
 * Each service keeps everything it stores in a PostgreSQL schema of its own: its tables, its copy
 * of the runtime's tables (offsets, ledger, outbox, failures) and its `pgmigrations`. Services then
 * share a database server without sharing a table, and a relay reads only its own service's outbox.
 */

const schemaName = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * `name` if it can be written in SQL and in `search_path` as it is (no quoting): lower-case letters,
 * digits and `_`, not starting with a digit, at most 63 characters. Anything else is refused, named.
 */
export function checkedSchema(name: string): string {
  if (!schemaName.test(name))
    throw new Error(
      `schema "${name}": expected lower-case letters, digits and _, not starting with a digit, at most 63 characters`,
    );
  return name;
}

/** The schema of the service named `serviceName`: lower case, every other character `_` (`ingest-gateway` → `ingest_gateway`). */
export function serviceSchema(serviceName: string): string {
  return checkedSchema(serviceName.toLowerCase().replace(/[^a-z0-9_]/g, '_'));
}
