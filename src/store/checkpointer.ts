/**
 * Worker thread: copies SQLite's write-ahead log into the database file (a passive checkpoint)
 * a few times a second, so that no commit on the main thread pays for it. Started by openDb
 * for a server's store; stops on the message 'stop'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';

const { file, everyMs } = workerData as { file: string; everyMs: number };
const sqlite = new SQLite(file);
sqlite.pragma('busy_timeout = 5000');
sqlite.pragma('wal_autocheckpoint = 0');

const timer = setInterval(() => {
  try {
    sqlite.pragma('wal_checkpoint(PASSIVE)');
  } catch (e) {
    // Busy or failing: the main connection's own automatic checkpoint is the fallback.
    parentPort?.postMessage({ error: (e as Error).message });
  }
}, everyMs);

parentPort?.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  sqlite.close();
  parentPort?.close();
});
