// Which copy of each queue library the tests load, and what queue-otel does with it. In a version
// matrix run (test/matrix/run.mjs), the requested version, loaded from the matrix folder: patched
// when it is in the supported range; otherwise left untouched, with one diag warning naming the
// library, its version and the range. In a normal run, the repository's copies, all patched.
import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import { satisfies } from 'semver';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BeeQueueInstrumentation,
  BullInstrumentation,
  BullMQInstrumentation,
  GraphileWorkerInstrumentation,
  PgBossInstrumentation,
  type QueueInstrumentationBase,
} from '../../src/index.js';
import { type LibraryName, libraryDir, libraryVersion, matrixTarget, requireLibrary } from '../helpers/library.js';

type Exports = Record<string, any>;
const wrapped = (f: unknown) => (f as { __wrapped?: boolean } | undefined)?.__wrapped === true;

/** Each library: its instrumentation, and whether one of the methods it wraps is wrapped. */
const LIBRARIES: Record<LibraryName, { make: () => QueueInstrumentationBase; patched: (e: Exports) => boolean }> = {
  bullmq: { make: () => new BullMQInstrumentation(), patched: (e) => wrapped(e.Worker?.prototype?.processJob) },
  bull: { make: () => new BullInstrumentation(), patched: (e) => wrapped(e.prototype?.processJob) },
  'bee-queue': { make: () => new BeeQueueInstrumentation(), patched: (e) => wrapped(e.prototype?._runJob) },
  'pg-boss': { make: () => new PgBossInstrumentation(), patched: (e) => wrapped(e.PgBoss?.prototype?.work) },
  'graphile-worker': {
    make: () => new GraphileWorkerInstrumentation(),
    patched: (e) => Array.isArray(e.WorkerPreset?.plugins) && e.WorkerPreset.plugins.some((p: { name?: string }) => p?.name === 'QueueOtelPlugin'),
  },
};

const warnings: string[] = [];
const logger: DiagLogger = {
  error: () => {},
  // A component logger passes its namespace first.
  warn: (...args) => void warnings.push(args.join(' ')),
  info: () => {},
  debug: () => {},
  verbose: () => {},
};
diag.setLogger(logger, DiagLogLevel.WARN);
const instrumentations: QueueInstrumentationBase[] = [];
afterAll(() => {
  for (const i of instrumentations) i.disable();
  diag.disable();
});

const target = matrixTarget();
const names = target ? [target.name as LibraryName] : (Object.keys(LIBRARIES) as LibraryName[]);

describe('the queue libraries the tests load', () => {
  for (const name of names) {
    it(`${name}: ${target ? `${target.version} from the matrix folder` : 'from node_modules'}, instrumented as its version says`, () => {
      const { make, patched } = LIBRARIES[name];
      const instrumentation = make();
      instrumentations.push(instrumentation);
      const ranges = instrumentation
        .getModuleDefinitions()
        .filter((d) => d.name === name)
        .flatMap((d) => d.supportedVersions)
        .filter((r) => r !== '*');
      expect(ranges.length).toBeGreaterThan(0);

      const exports = requireLibrary<Exports>(name);
      const version = libraryVersion(name);
      if (target) {
        expect(version).toBe(target.version);
        expect(libraryDir(name).startsWith(target.dir)).toBe(true);
      }
      const mine = warnings.filter((w) => w.includes(`${name} ${version}`));
      if (ranges.some((range) => satisfies(version, range))) {
        expect(patched(exports), `${name}@${version} patched`).toBe(true);
        expect(mine).toEqual([]);
      } else {
        expect(patched(exports), `${name}@${version} left alone`).toBe(false);
        expect(mine).toHaveLength(1);
        expect(mine[0]).toContain(`${name} ${version} is not supported (supported: ${ranges.join(' || ')}); it is not instrumented`);
        // Enabling again (or a second load) does not repeat the warning.
        instrumentation.disable();
        instrumentation.enable();
        expect(warnings.filter((w) => w.includes(`${name} ${version}`))).toHaveLength(1);
      }
    });
  }
});
