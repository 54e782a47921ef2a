// Local PostgreSQL (override with PG_URL): each test file uses schemas of its own and drops them.
import { randomUUID } from 'node:crypto';
import pg from 'pg';

export function pgUrl(): string {
  return process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
}

/** A schema name no other test, or another run of this one, uses. */
export function schemaName(label: string): string {
  return `qo_${label}_${randomUUID().slice(0, 8)}`.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
}

export async function dropSchemas(...schemas: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: pgUrl() });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
