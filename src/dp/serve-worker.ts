import type net from 'node:net';
import { serveAsWorker, type WorkerConfig } from './serve.js';

/**
 * An extra content-serving process forked by startContentServer({ workers }): it receives its
 * configuration and the listening socket over IPC, serves /content/ from its own cache, relays
 * the rest to the primary, and exits when the primary goes away.
 */
process.once('message', (config: WorkerConfig, handle: net.Server) => {
  if (config?.kind !== 'cascade-content-worker' || !handle) {
    process.exit(2);
  }
  serveAsWorker(config, handle).then(
    () => process.send?.('ready'),
    (e: Error) => {
      process.send?.(`cannot serve: ${e.message}`);
      process.exit(1);
    },
  );
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
