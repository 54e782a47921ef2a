import { configDefaults, defineConfig } from 'vitest/config';

// Tests that compare measured CPU time with what a job spent (test/resources.test.ts) run first and
// alone: on a 2-core machine, another test file's processes in parallel take the CPU their spinning
// jobs are measured against. Everything else runs in parallel afterwards.
const ALONE = ['test/resources.test.ts'];

export default defineConfig({
  test: {
    // Each file gets its own process: the instrumentation patches the queue libraries' prototypes.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      { extends: true, test: { name: 'timing', include: ALONE, sequence: { groupOrder: 0 } } },
      {
        extends: true,
        test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...ALONE], sequence: { groupOrder: 1 } },
      },
    ],
  },
});
