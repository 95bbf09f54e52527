import fs from 'node:fs';
import path from 'node:path';
import { writeFileDurableSync } from './durable.js';

/**
 * Which version of a program runs from a data folder (an agent's, a DP's): a JSON file there
 * names it, and each upgraded version lives in a folder of its own beside it. `null` is the
 * launcher's own code, which never changes by itself. A version being tried becomes current
 * once it shows it works; one that fails is rolled back to the version before it.
 */
export interface Trial {
  version: string;
  /** The version it replaces (null: the launcher's own). */
  from: string | null;
}

export interface VersionsState<T extends Trial> {
  current: string | null;
  previous: string | null;
  /** Installed and being tried: the launcher starts it; it becomes current once it works. */
  trying: T | null;
  /** A version that failed to start, not yet reported by the one that took over again. */
  rolledBack: (T & { reason: string; at: string }) | null;
}

export class VersionsFile<T extends Trial, S extends VersionsState<T>> {
  constructor(
    readonly dir: string,
    readonly file: string,
    readonly subdir: string,
    private readonly empty: S,
  ) {}

  versionDir(version: string): string {
    return path.join(this.dir, this.subdir, version);
  }

  read(): S {
    try {
      return { ...this.empty, ...(JSON.parse(fs.readFileSync(path.join(this.dir, this.file), 'utf8')) as S) };
    } catch {
      return { ...this.empty };
    }
  }

  write(v: S): void {
    writeFileDurableSync(path.join(this.dir, this.file), `${JSON.stringify(v, null, 2)}\n`);
  }

  /** The version on trial goes back to the one before; the one that takes over reports why. */
  rollBack(reason: string): S {
    const v = this.read();
    if (!v.trying) return v;
    const t = v.trying;
    const next: S = {
      ...v,
      current: t.from,
      trying: null,
      rolledBack: { ...t, reason: reason.slice(0, 900), at: new Date().toISOString() },
    };
    this.write(next);
    fs.rmSync(this.versionDir(t.version), { recursive: true, force: true });
    return next;
  }
}
