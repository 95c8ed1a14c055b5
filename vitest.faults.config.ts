import { defineConfig } from 'vitest/config';

/**
 * The fault suite (`npm run test:faults`): the kill switch under duplicate storms, a killed worker,
 * a database, Slack, PagerDuty, Temporal or a provider failing. Slow by nature (real outages, real
 * retry policies), so it runs apart from `npm test`, one file per process, with generous timeouts.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.fault.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Temporal's native worker crashes under worker threads: one process per file.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 300_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest-faults.json' },
  },
});
