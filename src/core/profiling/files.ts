/**
 * The `.cpuprofile` files this process wrote: their names, the bound on how many are kept, and the
 * latest one of each job name, which the live dashboard links to. Process-wide, on `globalThis`,
 * so that the CommonJS and ES module builds of queue-otel (an app may load both) share one list
 * and the dashboard sees the files of either.
 */
import { mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

/**
 * Files this process keeps at most in one folder; older ones it wrote there are deleted (never
 * anyone else's, nor those of an earlier run).
 */
export const MAX_FILES = 20;

/** One written profile. */
export interface WrittenProfile {
  /** Opaque and unique in the process: the dashboard serves a file by this, never by a path. */
  readonly id: number;
  readonly path: string;
  /** `messaging.system`, queue and job name as the metrics carry them (capped names). */
  readonly system: string;
  readonly queue: string;
  readonly jobName: string | undefined;
  /** Unix ms at which the file was written. */
  readonly writtenAt: number;
}

interface Store {
  nextId: number;
  /** Oldest first. */
  files: WrittenProfile[];
}

const KEY = Symbol.for('queue-otel.profiles.v1');

function store(): Store {
  const g = globalThis as Record<symbol, Store | undefined>;
  return (g[KEY] ??= { nextId: 1, files: [] });
}

/** Part of a file name: letters, digits, `.`, `_` and `-` only, at most 40 characters. */
function part(text: string): string {
  const clean = text.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[.]+/, '_');
  return clean.slice(0, 40) || '_';
}

let sequence = 0;

/** A new file name in `directory` for a profile of this job (nothing is created yet). */
export function profilePath(directory: string, queue: string, jobName: string | undefined): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const name = [part(queue), part(jobName ?? queue), stamp, `${process.pid}-${++sequence}`];
  return join(resolve(directory), `${name.join('.')}.cpuprofile`);
}

/**
 * Writes `body` to `path` (the folder is made if missing, readable by this user only: a profile
 * shows the code's paths and function names), records it for the dashboard, and deletes the
 * oldest files this process wrote in that folder beyond {@link MAX_FILES}: superseded ones first,
 * so the latest profile of each job name stays as long as there are fewer names than files.
 */
export async function writeProfile(
  path: string,
  body: string,
  labels: { system: string; queue: string; jobName: string | undefined },
): Promise<void> {
  const folder = dirname(path);
  await mkdir(folder, { recursive: true, mode: 0o700 });
  // Written aside, then renamed: whoever opens `path` (the span's reader, the dashboard) finds it
  // whole or not at all.
  const partial = `${path}.partial`;
  try {
    await writeFile(partial, body, { mode: 0o600 });
    await rename(partial, path);
  } catch (error) {
    await unlink(partial).catch(() => undefined);
    throw error;
  }
  const s = store();
  s.files.push({ id: s.nextId++, path, ...labels, writtenAt: Date.now() });
  for (;;) {
    const here = s.files.filter((f) => dirname(f.path) === folder);
    if (here.length <= MAX_FILES) break;
    const latest = latestOf(here);
    const gone = here.find((f) => !latest.has(f)) ?? (here[0] as WrittenProfile);
    s.files.splice(s.files.indexOf(gone), 1);
    await unlink(gone.path).catch(() => undefined);
  }
}

function latestOf(files: readonly WrittenProfile[]): Set<WrittenProfile> {
  const byName = new Map<string, WrittenProfile>();
  for (const f of files) byName.set(`${f.system}\0${f.queue}\0${f.jobName ?? ''}`, f);
  return new Set(byName.values());
}

/** The latest profile of each (system, queue, job name), oldest first. */
export function latestProfiles(): WrittenProfile[] {
  const latest = latestOf(store().files);
  return store().files.filter((f) => latest.has(f));
}

/** A profile this process wrote and still keeps, by its id. */
export function writtenProfile(id: number): WrittenProfile | undefined {
  return store().files.find((f) => f.id === id);
}
