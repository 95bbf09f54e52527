import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mapWorkerScripts } from '../src/lib/worker-script.js';

/**
 * Tests run the TypeScript sources, but a worker thread or a forked process runs compiled code:
 * take worker scripts from dist/, which test/global-setup.ts has just built.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
const src = path.join(root, 'src') + path.sep;
const dist = path.join(root, 'dist') + path.sep;
mapWorkerScripts((file) => (file.startsWith(src) ? dist + file.slice(src.length) : file));
