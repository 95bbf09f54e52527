import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readSiteConfig } from '../lib/site-config.js';
import { initSite } from './server.js';

describe('site init', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('writes admin-token and config.json durably: temporary file, fsync, rename, fsync of the folder', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-init-')), 'site');
    const opened = new Map<number, string>();
    const open = fs.openSync;
    vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
      const fd = (open as (...a: unknown[]) => number)(p, ...rest);
      opened.set(fd, String(p));
      return fd;
    }) as typeof fs.openSync);
    const synced: string[] = [];
    const fsync = fs.fsyncSync;
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd: number) => {
      synced.push(opened.get(fd) ?? `fd ${fd}`);
      fsync(fd);
    });
    try {
      const r = await initSite({ dataDir: dir, code: 'DUR', listen: '127.0.0.1:8123' });
      expect(r).toMatchObject({ code: 'DUR', db: 'sqlite', listen: '127.0.0.1:8123' });
      for (const name of ['admin-token', 'config.json']) {
        expect(synced.some((p) => path.dirname(p) === dir && path.basename(p).startsWith(`${name}.`) && p.endsWith('.tmp'))).toBe(true);
        expect(fs.statSync(path.join(dir, name)).mode & 0o777).toBe(0o600);
      }
      expect(synced).toContain(dir);
      expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
      expect(readSiteConfig(dir)).toEqual({ code: 'DUR', name: 'DUR', listen: '127.0.0.1:8123' });
    } finally {
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});
