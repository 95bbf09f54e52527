/**
 * A small Prometheus registry: counters and gauges with labels, rendered in the text format.
 * Enough for /metrics without a dependency.
 */
type Labels = Record<string, string>;

interface Metric {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  values: Map<string, { labels: Labels; value: number }>;
  collect?: () => number;
  collectMany?: () => { labels: Labels; value: number }[];
}

const key = (labels: Labels): string =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

export class Metrics {
  private readonly metrics = new Map<string, Metric>();

  private get(name: string, help: string, type: Metric['type']): Metric {
    let m = this.metrics.get(name);
    if (!m) {
      m = { name, help, type, values: new Map() };
      this.metrics.set(name, m);
    }
    return m;
  }

  counter(name: string, help: string): (n?: number, labels?: Labels) => void {
    const m = this.get(name, help, 'counter');
    return (n = 1, labels = {}) => {
      const k = key(labels);
      const v = m.values.get(k);
      if (v) v.value += n;
      else m.values.set(k, { labels, value: n });
    };
  }

  /** A gauge read when /metrics is scraped. */
  gauge(name: string, help: string, collect: () => number): void {
    const m = this.get(name, help, 'gauge');
    m.collect = collect;
  }

  /** A gauge with one value per label set, read when /metrics is scraped. */
  gauges(name: string, help: string, collect: () => { labels: Labels; value: number }[]): void {
    const m = this.get(name, help, 'gauge');
    m.collectMany = collect;
  }

  render(): string {
    const lines: string[] = [];
    for (const m of this.metrics.values()) {
      lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
      if (m.collect) lines.push(`${m.name} ${m.collect()}`);
      for (const { labels, value } of [...m.values.values(), ...(m.collectMany?.() ?? [])]) {
        const l = Object.entries(labels)
          .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
          .join(',');
        lines.push(`${m.name}${l ? `{${l}}` : ''} ${value}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }
}

/** The p-th percentile (0-100) of some numbers (nearest rank); 0 for none. */
export function percentile(xs: ArrayLike<number>, p: number): number {
  if (xs.length === 0) return 0;
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** The last `n` durations (ms), for percentiles read at a scrape. */
export function recentTimes(n: number): { note(ms: number): void; percentile(p: number): number } {
  const ring = new Float64Array(n);
  let count = 0;
  return {
    note(ms) {
      ring[count % n] = ms;
      count++;
    },
    percentile: (p) => percentile(ring.subarray(0, Math.min(count, n)), p),
  };
}
