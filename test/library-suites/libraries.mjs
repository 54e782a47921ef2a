// The queue libraries whose own test suites test/library-suites/run.mjs can run, plain and with
// queue-otel's instrumentation patched into their source classes. Each entry says where the
// source comes from (a release tag of its GitHub repository), how to prepare it, how to run its
// suite, and how queue-otel's module definition maps onto its source files.
//
// prepare: what the library's own scripts make before its tests run (code generation, a build),
// in order. Each entry runs its steps when the file it `creates` is missing (or an earlier entry
// ran). An `optional` entry (no `creates`) runs only with --fetch, and its failure is reported,
// not fatal.

export const LIBRARIES = {
  bullmq: {
    module: 'bullmq',
    instrumentation: 'BullMQInstrumentation',
    repository: 'https://github.com/taskforcesh/bullmq',
    // The release commit of 6.2.0 ("chore(release): 6.2.0"): tag v6.2.0 is the commit before it,
    // whose package.json still says 6.1.2. Same code.
    tag: '9dfe73cf1e57947fc7ab9f9bdefbe07cb4824e1c',
    version: '6.2.0',
    // Classes the tests import from ../src/classes are the ones src/index.ts exports.
    sourceEntry: 'src/index.ts',
    sourceFile: () => undefined,
    wrappedMethod: (main) => main.Worker?.prototype?.processJob,
    install: ['npm', 'install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
    prepare: [
      {
        // BullMQ's `pretest`: the Lua scripts become src/scripts/*.ts (the circular-reference check is skipped).
        creates: 'src/scripts/index.ts',
        steps: [
          ['npx', 'ts-node', '--project', 'tsconfig-cjs.json', 'scripts/generateRawScripts.ts'],
          ['node', './scripts/commandTransform.js', './rawScripts', './src/scripts'],
        ],
      },
      {
        // The CommonJS half of its `build` (tsc -p tsconfig-cjs.json): tests/child-pool.test.ts forks
        // dist/cjs/classes/main.js and starts dist/cjs/classes/main-worker.js in a thread. The ESM
        // build and the copies of the .lua and .sql files are not needed by the suite.
        creates: 'dist/cjs/classes/main.js',
        steps: [['npx', 'tsc', '-p', 'tsconfig-cjs.json']],
      },
    ],
    // Its default config: the 41 files that run on Redis (cluster, connection, sandboxed_process,
    // the node-redis, bun and adapter smoke tests and PostgreSQL run under other configs).
    config: 'vitest.config.ts',
    fileParallelism: false,
    redis: true,
  },
  'pg-boss': {
    module: 'pg-boss',
    instrumentation: 'PgBossInstrumentation',
    repository: 'https://github.com/timgit/pg-boss',
    tag: '12.27.0',
    version: '12.27.0',
    sourceEntry: 'src/index.ts',
    // The definition's files are named as in the published package (pg-boss/dist/x.js).
    sourceFile: (name) => {
      const m = /^pg-boss\/dist\/(.+)\.js$/.exec(name);
      return m ? `src/${m[1]}.ts` : undefined;
    },
    wrappedMethod: (main) => main.PgBoss?.prototype?.work,
    install: ['npm', 'ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
    // pg-boss's `pretest` generates the Prisma client some adapter tests import. Optional: tried
    // with --fetch only (it downloads Prisma's engines); without it those tests fail in both runs.
    prepare: [{ creates: undefined, optional: true, steps: [['npx', 'prisma', 'generate', '--schema=test/prisma/schema.prisma']] }],
    config: 'vitest.config.ts',
    // Each test has its own schema: pg-boss runs its files in parallel (vitest's default).
    fileParallelism: true,
    postgres: true,
  },
  'bee-queue': {
    module: 'bee-queue',
    instrumentation: 'BeeQueueInstrumentation',
    repository: 'https://github.com/bee-queue/bee-queue',
    tag: 'v2.0.0',
    version: '2.0.0',
    // CommonJS: index.js is lib/queue.js; the tests require ../lib/queue and ../lib/job.
    sourceEntry: 'index.js',
    sourceFile: (name) => {
      const m = /^bee-queue\/(.+)$/.exec(name);
      return m ? m[1] : undefined;
    },
    wrappedMethod: (main) => main.prototype?._runJob,
    install: ['npm', 'install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
    prepare: [],
    runner: 'ava',
    testFiles: /-test\.js$/,
    // Its tests use redis://localhost:6379 unless BEE_QUEUE_TEST_REDIS is set (one asserts 6379).
    redis: 'namespace',
  },
  bull: {
    module: 'bull',
    instrumentation: 'BullInstrumentation',
    repository: 'https://github.com/OptimalBits/bull',
    // The newest release in the stored snapshot (4.16.x is not tagged there).
    tag: 'v4.15.0',
    version: '4.15.0',
    sourceEntry: 'index.js',
    sourceFile: (name) => {
      const m = /^bull\/(.+)$/.exec(name);
      return m ? m[1] : undefined;
    },
    wrappedMethod: (main) => main.prototype?.processJob,
    // npm follows Bull 4.15's yarn.lock to msgpackr 1.10, whose pack() throws on Node 24
    // (ERR_BUFFER_OUT_OF_BOUNDS); 4.16 requires ^1.11.2.
    install: ['npm', 'install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', '--no-save', 'msgpackr@^1.11.2'],
    // Bull's `pretest`: the Lua scripts become lib/scripts/*.js.
    prepare: [{ creates: 'lib/scripts/index.js', steps: [['node', 'generateRawScripts.js'], ['node', './commandTransform.js', './rawScripts', './lib/scripts']] }],
    runner: 'mocha',
    testFiles: /^test_.*\.js$/,
    // Its tests connect to 127.0.0.1:6379 and FLUSHDB it: only ever a private server.
    redis: 'namespace',
  },
};
