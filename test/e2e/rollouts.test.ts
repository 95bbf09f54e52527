import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Rollout {
  id: string;
  state: string;
  message: string | null;
  waves: { members: number; succeeded: number; failed: number; released: boolean }[];
}

/**
 * Rollouts end to end on one site and its local DP, with six real agents run one cycle at a
 * time: the pilot wave first, the next waves only once the one before succeeded; a program
 * that asks for a restart counts only after the machine restarted; a rollout whose pilot fails
 * halts itself and says which wave, how many and which exit codes; pause, resume, cancel.
 */
describe('rollouts', () => {
  const root = tmpDir('cascade-rollouts-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    await Promise.all(running.map((s) => s.stop()));
  });

  it('releases waves in order as they succeed, and halts on failures', async () => {
    const dir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const cen = await startSite(dir, [], { listen: null, env: { CASCADE_ROLLOUT_SECONDS: '0.3' } });
    running.push(cen);
    const env = cen.env;
    const run = async (args: string[]) => {
      const r = await cascade(args, { env });
      if (r.code !== 0) throw new Error(`cascade ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const rollout = async (id: string) => JSON.parse(await run(['rollout', 'show', id, '--json'])) as Rollout;

    // A package whose program exits with $EXIT_CODE (0 unless the agent's environment says otherwise).
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(
      path.join(src, 'install.sh'),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell script, not a template
      '#!/bin/sh\nif [ -n "$RESTART" ]; then touch "$CASCADE_RESTART_FILE"; fi\necho "exit ${EXIT_CODE:-0}"\nexit "${EXIT_CODE:-0}"\n',
      { mode: 0o755 },
    );
    const pkg = JSON.parse(await run(['package', 'create', src, '--name', 'Tool', '--program', 'Install=./install.sh', '--json']))
      .id as string;

    const jt = JSON.parse(await run(['agent', 'join-token', '--uses', '6', '--json'])).token as string;
    const agents: { id: string; dir: string }[] = [];
    for (let i = 1; i <= 6; i++) {
      const d = path.join(root, `agent${i}`);
      await cascade(['agent', 'init', '--data', d, '--site', cen.url, '--join-token', jt, '--hostname', `ws-0${i}`]);
      agents.push({ id: `CEN-00000${i}`, dir: d });
    }
    const cycle = async (i: number, extra: Record<string, string> = {}) => {
      const r = await cascade(['agent', 'run-now', '--data', (agents[i] as { dir: string }).dir], {
        env: { CASCADE_BOOT_ID: 'boot-1', ...extra },
      });
      expect(r.code).toBe(0);
      return r.stdout;
    };
    await run(['collection', 'create', 'All', '--rule', 'hostname like "ws-%"']);
    await run(['collection', 'create', 'Pilot', '--client', 'CEN-000001', '--client', 'CEN-000002']);

    // Refusals: waves that leave members out, an unknown pilot collection.
    let r = await cascade(['rollout', 'create', pkg, '--program', 'Install', '--collection', 'All', '--wave', 'Pilot', '--wave', '50%'], {
      env,
    });
    expect(r.stderr).toBe('cascade: the waves reach 50 % of the remainder: the others would never be offered it; end with --wave rest\n');
    r = await cascade(['rollout', 'create', pkg, '--program', 'Install', '--collection', 'All', '--wave', 'Nobody', '--wave', 'rest'], {
      env,
    });
    expect(r.stderr).toBe('cascade: wave collection "Nobody": no such collection (make it with "cascade collection create")\n');

    const created = JSON.parse(
      await run([
        'rollout',
        'create',
        pkg,
        '--program',
        'Install',
        '--collection',
        'All',
        '--wave',
        'Pilot',
        '--wave',
        '50%',
        '--wave',
        'rest',
        '--success',
        '100%',
        '--failure',
        '40%',
        '--hold',
        '1s',
        '--json',
      ]),
    ) as Rollout;
    const id = created.id;
    expect(created.state).toBe('running');
    expect(created.waves.map((w) => w.released)).toEqual([true, false, false]);
    expect(created.waves[0]?.members).toBe(2);
    expect(created.waves.reduce((n, w) => n + w.members, 0)).toBe(6);

    // Only the pilots act; a client of a later wave is told why it waits.
    for (let i = 2; i < 6; i++) await cycle(i);
    const waitWhy = JSON.parse(await run(['why', 'CEN-000003', id, '--json']));
    expect(waitWhy.state).toBe('waiting-wave');
    expect(waitWhy.reasons.at(-1).text).toMatch(/^in wave [23] of 3 .*: 1 of 3 waves released so far/);
    expect((await rollout(id)).waves[0]?.succeeded).toBe(0);
    // Pilot 1 asks for a restart: not counted until the machine restarted.
    expect(await cycle(0, { RESTART: '1' })).toMatch(/succeeded/);
    await cycle(1);
    await new Promise((res) => setTimeout(res, 2000));
    let ro = await rollout(id);
    expect(ro.waves[0]).toMatchObject({ members: 2, succeeded: 1 });
    expect(ro.waves[1]?.released).toBe(false);
    expect(ro.message).toMatch(/wave 1 of 3 \(collection "Pilot"\): 1 of 2 succeeded \(50 %\); it advances at 100 %/);
    // The same boot: still pending. After a restart: installed, and wave 2 follows after the hold.
    await cycle(0);
    expect((await rollout(id)).waves[0]?.succeeded).toBe(1);
    expect(await cycle(0, { CASCADE_BOOT_ID: 'boot-2' })).toMatch(/the machine restarted/);
    await until('wave 2 is released', async () => (await rollout(id)).waves[1]?.released === true, 15_000);
    // Every cycle now: wave 2 runs, then wave 3 is released, runs, and the rollout completes.
    await until(
      'the rollout completes',
      async () => {
        for (let i = 2; i < 6; i++) await cycle(i);
        return (await rollout(id)).state === 'completed';
      },
      40_000,
    );
    ro = await rollout(id);
    expect(ro.waves.map((w) => w.succeeded)).toEqual(ro.waves.map((w) => w.members));
    const status = JSON.parse(await run(['rollout', 'status', id, '--json']));
    expect(status.clients.every((c: { state: string }) => c.state === 'succeeded')).toBe(true);
    expect(await run(['rollout', 'list'])).toMatch(new RegExp(`${id} .* completed +3 of 3 +6 of 6 +0`));

    // --- a second rollout: one pilot of two fails, so it halts itself in wave 1 ------------------
    const second = JSON.parse(
      await run([
        'rollout',
        'create',
        pkg,
        '--program',
        'Install',
        '--collection',
        'All',
        '--wave',
        'Pilot',
        '--wave',
        'rest',
        '--hold',
        '0',
        '--json',
      ]),
    ) as Rollout;
    await cycle(0, { EXIT_CODE: '7' });
    await cycle(1);
    await until('the rollout halts', async () => (await rollout(second.id)).state === 'halted', 10_000);
    ro = await rollout(second.id);
    expect(ro.message).toMatch(
      /^halted: 1 of 2 clients in the released waves failed \(50 %; the failure threshold is 5 %\) — wave 1 of 2 \(collection "Pilot"\): 1 of 2 failed; commonest exit codes: 7 \(×1\)$/,
    );
    const msgs = await run(['messages']);
    expect(msgs).toMatch(new RegExp(`rollout ${second.id}: halted`));
    // Halted: nobody else is offered it.
    await cycle(2);
    expect(JSON.parse(await run(['why', 'CEN-000003', second.id, '--json'])).state).toBe('waiting-wave');
    // Approve does not apply; resume accepts the failure so far; cancel disables it.
    r = await cascade(['rollout', 'approve', second.id], { env });
    expect(r.stderr).toBe(`cascade: rollout ${second.id} is halted; "approve" applies to a rollout that is awaiting-approval\n`);
    expect(await run(['rollout', 'resume', second.id])).toMatch(/running — resumed in wave 1 of 2/);
    // The accepted failure does not halt it again; wave 1 still needs 95 % to advance.
    await until('the resumed rollout looks again', async () => /advances at 95 %/.test((await rollout(second.id)).message ?? ''), 10_000);
    expect((await rollout(second.id)).state).toBe('running');
    expect(await run(['rollout', 'cancel', second.id])).toMatch(/cancelled/);
    expect(JSON.parse(await run(['advertisement', 'show', second.id, '--json'])).enabled).toBe(false);
  });
});
