// Bundles the agent into one file a client machine runs with Node.js alone:
// dist/cascade-agent.cjs (docs/agent.md). Run after the TypeScript build: npm run build:agent.
import { rolldown } from 'rolldown';

const bundle = await rolldown({ input: 'dist/agent/main.js', platform: 'node', logLevel: 'warn' });
await bundle.write({ file: 'dist/cascade-agent.cjs', format: 'cjs', codeSplitting: false, banner: '#!/usr/bin/env node' });
await bundle.close();
