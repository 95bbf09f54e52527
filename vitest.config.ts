import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['./test/global-setup.ts'],
    setupFiles: ['./test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e tests start real processes and servers: keep the 2-core machine from thrashing.
    maxWorkers: 2,
    reporters: ['default', './test/count-reporter.ts'],
  },
});
