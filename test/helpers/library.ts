// Loads a queue library the way an application does (`require`), from the version matrix's folder
// when the matrix runs this file (test/matrix/run.mjs), else from this repository's node_modules.
//
// The matrix sets QUEUE_OTEL_TEST_LIBRARY (`bullmq`), QUEUE_OTEL_TEST_LIBRARY_VERSION (`5.0.0`)
// and QUEUE_OTEL_TEST_LIBRARY_DIR (a folder whose node_modules holds that version). The request is
// still the bare name, made from that folder, so require-in-the-middle sees `bullmq` load and
// OpenTelemetry reads the version from that copy's package.json: the instrumentation patches it
// exactly as it patches an application's.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';

export type LibraryName = 'bullmq' | 'bull' | 'bee-queue' | 'pg-boss' | 'graphile-worker';

const localRequire = createRequire(import.meta.url);

/** The library and folder the matrix asked for, if this is a matrix run. */
export function matrixTarget(): { name: string; version: string; dir: string } | undefined {
  const name = process.env.QUEUE_OTEL_TEST_LIBRARY;
  const dir = process.env.QUEUE_OTEL_TEST_LIBRARY_DIR;
  const version = process.env.QUEUE_OTEL_TEST_LIBRARY_VERSION;
  if (!name || !dir || !version) return undefined;
  return { name, version, dir };
}

function requireFor(name: LibraryName): NodeJS.Require {
  const target = matrixTarget();
  return target?.name === name ? createRequire(join(target.dir, 'package.json')) : localRequire;
}

/** The folder of the copy of `name` that {@link requireLibrary} loads. */
export function libraryDir(name: LibraryName): string {
  // From its entry point up to its package.json (not every library exports `./package.json`).
  let dir = dirname(requireFor(name).resolve(name));
  while (!isPackage(dir, name)) {
    if (dirname(dir) === dir) throw new Error(`no package.json of ${name} above ${requireFor(name).resolve(name)}`);
    dir = dirname(dir);
  }
  return dir;
}

function isPackage(dir: string, name: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === name;
  } catch {
    return false;
  }
}

/** The version of the copy of `name` that {@link requireLibrary} loads. */
export function libraryVersion(name: LibraryName): string {
  return (JSON.parse(readFileSync(join(libraryDir(name), 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * `require(pkg)` from where `library` is loaded from: a package that must match the library's
 * version (bullmq-otel for bullmq), installed beside it in the matrix folder.
 */
export function requireBeside<T = unknown>(library: LibraryName, pkg: string): T {
  return requireFor(library)(pkg) as T;
}

/**
 * `require(name)` from the matrix folder in a matrix run, else from here. In a matrix run, fails
 * unless the copy found is the requested version inside that folder, so a test can never pass
 * against the repository's own copy by mistake.
 */
export function requireLibrary<T = unknown>(name: LibraryName): T {
  const target = matrixTarget();
  if (target?.name === name) {
    const dir = libraryDir(name);
    const version = libraryVersion(name);
    if (!dir.startsWith(target.dir + sep) || version !== target.version) {
      throw new Error(`matrix: expected ${name}@${target.version} under ${target.dir}, found ${name}@${version} at ${dir}`);
    }
  }
  return requireFor(name)(name) as T;
}
