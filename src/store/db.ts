import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { fail } from '../core/errors.js';
import { workerScript } from '../lib/worker-script.js';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface OpenedDb {
  db: Kysely<Database>;
  dialect: Dialect;
  /** SQLite only: see RelaxedWriter. */
  relaxed?: RelaxedWriter;
  /** SQLite, when opened with `checkpointer`: stops the checkpoint thread. */
  stopCheckpointer?: () => Promise<void>;
}

/**
 * SQLite: the write-ahead log is copied into the database file by a worker thread
 * (./checkpointer.ts) rather than by whichever commit crosses SQLite's threshold, which stalled
 * the main thread 15-25 ms several times a second under client check-ins. The main connection
 * keeps an automatic checkpoint at a higher threshold should the thread fall behind or fail.
 */
function startCheckpointer(file: string, sqlite: SQLite.Database): () => Promise<void> {
  const worker = new Worker(workerScript(import.meta.url, 'checkpointer'), { workerData: { file, everyMs: 250 } });
  worker.unref();
  sqlite.pragma('wal_autocheckpoint = 4000');
  const fallBack = () => sqlite.open && sqlite.pragma('wal_autocheckpoint = 1000');
  worker.on('error', fallBack);
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return async () => {
    // Kept alive while it stops: unreferenced, a process whose last work this is would end
    // here with its top-level await unsettled (exit code 13).
    worker.ref();
    worker.postMessage('stop');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
    clearTimeout(timer);
    await worker.terminate();
  };
}

/**
 * SQLite only: a second connection for writes a power cut may lose without harm (when clients
 * were last seen). Its commits are not fsync'd (synchronous=NORMAL; a killed process loses
 * nothing, the write is in the WAL) and it never waits for the write lock, which the main
 * connection may hold across an asynchronous transaction in this same thread: `run` answers
 * false when the database is busy, and the caller tries again later.
 */
export interface RelaxedWriter {
  run(sql: string, params: readonly unknown[]): boolean;
  close(): void;
}

/** SQLite's words for a file that is not (or no longer) a whole database. */
const isDamage = (e: unknown): boolean =>
  /SQLITE_(CORRUPT|NOTADB)/.test(String((e as { code?: unknown })?.code)) || /malformed|not a database/i.test((e as Error)?.message ?? '');

function damagedDatabase(file: string, e: unknown): Error {
  if (!isDamage(e)) return e as Error;
  return fail(
    'damaged',
    `the database ${file} is damaged (${(e as Error).message}): restore it from a backup (docs/operations.md); nothing was changed`,
  );
}

function relaxedWriter(file: string): RelaxedWriter {
  const sqlite = new SQLite(file);
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('busy_timeout = 0');
  // Its commits never checkpoint: that would be a wait for the write lock (and an fsync) here.
  sqlite.pragma('wal_autocheckpoint = 0');
  const statements = new Map<string, SQLite.Statement>();
  return {
    run(sql, params) {
      let stmt = statements.get(sql);
      if (!stmt) {
        stmt = sqlite.prepare(sql);
        if (statements.size < 50) statements.set(sql, stmt);
      }
      try {
        stmt.run(...params);
        return true;
      } catch (e) {
        if ((e as { code?: string }).code === 'SQLITE_BUSY') return false;
        throw e;
      }
    },
    close: () => sqlite.close(),
  };
}

/** The SQLite file used when no `--db` is given. */
export const sqlitePath = (dataDir: string): string => path.join(dataDir, 'cascade.db');

export const isPostgresUrl = (url: string): boolean => /^postgres(ql)?:\/\//.test(url);

// int8 columns hold byte counts: return numbers, not strings (values stay below 2^53).
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * Opens the database: PostgreSQL when `url` is a postgres:// URL, otherwise the SQLite file
 * `url` (default DIR/cascade.db), and brings its schema up to date.
 */
export async function openDb(opts: {
  url?: string | undefined;
  dataDir: string;
  /** Migrate only up to this migration (tests of a migration); default: the latest. */
  upTo?: string;
  /** SQLite: checkpoint in a worker thread (servers; see startCheckpointer). */
  checkpointer?: boolean;
}): Promise<OpenedDb> {
  let main: SQLite.Database | undefined;
  let opened: OpenedDb;
  if (opts.url && isPostgresUrl(opts.url)) {
    const pool = new pg.Pool({ connectionString: opts.url, max: 10 });
    // An idle connection the server ends (a restart, an administrator, a dropped database) is
    // dropped from the pool and the next query opens another; unheard, its error would kill
    // the process.
    pool.on('error', () => {});
    try {
      const client = await pool.connect();
      client.release();
    } catch (e) {
      await pool.end().catch(() => {});
      throw fail('unavailable', `cannot connect to PostgreSQL at ${redact(opts.url)}: ${(e as Error).message}`);
    }
    opened = { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), dialect: 'postgres' };
  } else {
    const file = opts.url ?? sqlitePath(opts.dataDir);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    let sqlite: SQLite.Database;
    try {
      sqlite = new SQLite(file);
      // WAL with synchronous=FULL: a commit is on disk before it is acknowledged.
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('synchronous = FULL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
    } catch (e) {
      throw damagedDatabase(file, e);
    }
    main = sqlite;
    opened = { db: new Kysely<Database>({ dialect: new SqliteDialect({ database: preparedOnce(sqlite) }) }), dialect: 'sqlite' };
  }
  const migrator = new Migrator({ db: opened.db, provider: migrationProvider });
  const { error } = await (opts.upTo ? migrator.migrateTo(opts.upTo) : migrator.migrateToLatest());
  if (error) {
    await opened.db.destroy();
    if (main && isDamage(error)) throw damagedDatabase(opts.url ?? sqlitePath(opts.dataDir), error);
    throw fail('internal', `database migration failed: ${(error as Error).message}`);
  }
  if (main) {
    const file = opts.url ?? sqlitePath(opts.dataDir);
    opened.relaxed = relaxedWriter(file);
    if (opts.checkpointer) opened.stopCheckpointer = startCheckpointer(file, main);
  }
  return opened;
}

/**
 * The database as Kysely's SQLite driver sees it, with each SQL text prepared once: the driver
 * prepares every query afresh, which cost an import of 8,000 chunks ~0.1 s of the main thread.
 * The most recently used 200 statements are kept. Safe because nothing here streams a query:
 * a statement runs to its end (all/run) before another use of it can start.
 */
function preparedOnce(sqlite: SQLite.Database): { close(): void; prepare(sql: string): SQLite.Statement } {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let stmt = cache.get(sql);
      if (stmt) cache.delete(sql);
      else stmt = sqlite.prepare(sql);
      cache.set(sql, stmt);
      if (cache.size > 200) cache.delete(cache.keys().next().value as string);
      return stmt;
    },
  };
}

/** Hides the password in a connection URL for messages and logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}
