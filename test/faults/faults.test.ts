import { describe, expect, it } from 'vitest';
import { runFaultSuite } from './suite.js';

/**
 * The fault suite's short form (CI): eight seeded kills in three rounds — during distribution,
 * relay and a client's download (every role at least once, seed 44), during a courier import and
 * during a repair — then the invariants. The long form: `npm run
 * faults` (FAULT_KILLS, default 200; FAULT_SEED replays a run).
 */
describe('fault suite', () => {
  it('kills processes at seeded moments during distribution, client downloads, courier import and repair; every invariant holds after each restart', async () => {
    const kills = Number(process.env.FAULT_KILLS) || 8;
    const seed = Number(process.env.FAULT_SEED) || (process.env.FAULT_KILLS ? Date.now() % 2 ** 31 : 44);
    const r = await runFaultSuite({ kills, seed, say: (l) => process.stdout.write(`faults: ${l}\n`) });
    process.stdout.write(
      `faults: seed ${r.seed}: ${r.kills} kills (${Object.entries(r.killsByRole)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}; ${Object.entries(r.killsByPhase)
        .map(([k, n]) => `${n} during ${k}`)
        .join(', ')}) in ${r.rounds} rounds, ${r.checks} invariant checks, ${r.violations.length} violations\n`,
    );
    expect(r.kills).toBe(kills);
    expect(r.violations).toEqual([]);
  }, 3_600_000);
});
