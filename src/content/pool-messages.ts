/** The key of the message a pool thread sends once its modules are loaded (shared by ./pool.ts and ./worker.ts). */
export const WORKER_LOADED = 'cascadeWorkerLoaded';
