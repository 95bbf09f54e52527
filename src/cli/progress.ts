import { formatBytes as fmtBytes } from '../core/size.js';

export { fmtBytes };

/**
 * A progress bar on stderr, drawn only when stderr is a terminal (and never with --json).
 */
export class Progress {
  private last = 0;
  private readonly enabled: boolean;
  private readonly started = Date.now();

  constructor(
    private readonly label: string,
    private total: number,
    enabled = true,
  ) {
    this.enabled = enabled && process.stderr.isTTY === true;
  }

  setTotal(total: number): void {
    this.total = total;
  }

  update(done: number, note = ''): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 100 && done < this.total) return;
    this.last = now;
    const width = 28;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const fill = Math.round(frac * width);
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const line = `${this.label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmtBytes(done)}/${fmtBytes(this.total)} ${fmtBytes(rate)}/s ${note}`;
    process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 100) - 1)}\x1b[K`);
  }

  done(): void {
    if (this.enabled) process.stderr.write('\r\x1b[K');
  }
}
