/**
 * Change enablement through the real CLI against a real server: a production environment that
 * needs an approved change, a release, a normal change raised and submitted, refused to its own
 * requester, approved by a change authority and allowed through the gate; an edit of its window
 * that voids the approval; a freeze that closes the gate; feature flags; the calendar feed.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gantryJson, runGantry, type ServerProcess, startServer } from './helpers/processes.ts';

const TOKEN = `gnt_changecli_${'c'.repeat(40)}`;
const ZONE = 'Europe/Berlin';

/** Minutes from now, as local time in `zone` to the minute: 2026-11-24T22:00. */
const at = (minutes: number, zone = ZONE) =>
  DateTime.now().setZone(zone).plus({ minutes }).toFormat("yyyy-MM-dd'T'HH:mm");

describe('change enablement through the CLI', () => {
  let dir: string;
  let server: ServerProcess;
  let admin: Record<string, string>;
  let carol: Record<string, string>;
  let number: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-change-cli-'));
    server = await startServer(['--data-dir', path.join(dir, 'data')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    admin = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    writeFileSync(path.join(dir, 'web.txt'), 'shop web 2.4.0\n');
    const [, user] = await Promise.all([
      (async () => {
        await gantryJson(['env', 'create', 'staging'], admin);
        await gantryJson(['env', 'create', 'production'], admin);
      })(),
      gantryJson(['users', 'create', 'carol', '--role', 'change-authority'], admin),
      gantryJson(
        ['artifact', 'push', path.join(dir, 'web.txt'), '--component', 'web', '--version', '2.4.0'],
        admin,
      ),
    ]);
    const token = await gantryJson(['tokens', 'create', 'carol-cli', '--user', user.id], admin);
    carol = { GANTRY_URL: server.url, GANTRY_TOKEN: token.secret };
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('sets production’s policy: an approved change required, one approval', async () => {
    const policy = await runGantry(
      ['env', 'policy', 'production', '--change-required', '--approvals', '1', '--not-bookable'],
      { env: admin },
    );
    expect(policy.code, policy.stderr).toBe(0);
    expect(policy.stdout).toMatch(/change required\s+yes/);
    expect(policy.stdout).toMatch(/approvals\s+1 \(high risk: 2\) from change-authority/);
    const shown = await gantryJson(['env', 'show', 'production'], admin);
    expect(shown.policy).toMatchObject({ changeRequired: true, approvals: 1, bookable: false });
  });

  it('makes a release from the media library and shows it', async () => {
    const release = await gantryJson(
      ['release', 'create', 'shop@2.4.0', '--component', 'web=2.4.0', '--flag', 'new-checkout'],
      admin,
    );
    expect(release.components).toEqual([
      { component: 'web', version: '2.4.0', digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) },
    ]);
    const shown = await runGantry(['release', 'show', 'shop@2.4.0'], { env: admin });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/web\s+2\.4\.0\s+sha256:/);
    expect(shown.stdout).toContain('not made available anywhere yet');
  });

  it('raises and submits a normal change; its requester may not approve it; a change authority does', async () => {
    const created = await gantryJson(
      [
        'change',
        'create',
        '--type',
        'normal',
        '--title',
        'Ship shop 2.4.0',
        '--release',
        'shop@2.4.0',
        '--env',
        'production',
        '--window',
        `${at(-30)}/${at(120)}`,
        '--tz',
        ZONE,
        '--impact',
        'none',
        '--done-before',
        '--backout-tested',
        '--no-data-change',
        '--backout-plan',
        'redeploy 2.3.9',
      ],
      admin,
    );
    number = created.number;
    expect(number).toMatch(/^CHG-\d+$/);
    expect(created).toMatchObject({ state: 'draft', risk: 'low', approvalsRequired: 1 });
    expect(created.windows[0].timeZone).toBe(ZONE);

    const submitted = await runGantry(['change', 'submit', number], { env: admin });
    expect(submitted.code, submitted.stderr).toBe(0);
    expect(submitted.stdout).toContain(`${number} is now submitted`);

    const own = await runGantry(['change', 'approve', number, '--reason', 'looks fine to me'], {
      env: admin,
    });
    expect(own.code).toBe(3);
    expect(own.stderr).toContain('the requester of a change cannot approve or reject it');

    const approved = await gantryJson(['change', 'approve', number, '--reason', 'reviewed'], carol);
    expect(approved).toMatchObject({ state: 'approved', approvalsValid: 1, approvalsRequired: 1 });

    const check = await runGantry(['change', 'check', number, '--env', 'production'], { env: admin });
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('ALLOWED');
  });

  it('voids the approval when the window is edited, and the gate says not_approved (exit 3)', async () => {
    const edit = await runGantry(
      ['change', 'edit', number, '--window', `${at(-20)}/${at(180)}`, '--tz', ZONE],
      {
        env: admin,
      },
    );
    expect(edit.code, edit.stderr).toBe(0);
    expect(edit.stdout).toContain('it is submitted');
    expect(edit.stdout).toContain('no longer count');

    const shown = await runGantry(['change', 'show', number], { env: admin });
    expect(shown.stdout).toMatch(/state\s+submitted/);
    expect(shown.stdout).toMatch(/carol\s+change-authority\s+approved\s+void/);
    expect(shown.stdout).toMatch(/approvals\s+0 of 1/);
    // The window in its own zone and in UTC.
    expect(shown.stdout).toMatch(
      /\d{2}:\d{2} \+0[12]:00 – [\d-]+ [\d:]+ \+0[12]:00\s+[\d-]+ [\d:]+Z – [\d-]+ [\d:]+Z\s+Europe\/Berlin/,
    );

    const check = await runGantry(['change', 'check', number, '--env', 'production', '--json'], {
      env: admin,
    });
    expect(check.code).toBe(3);
    const verdict = JSON.parse(check.stdout);
    expect(verdict.allowed).toBe(false);
    expect(verdict.reasons.map((r: { code: string }) => r.code)).toEqual(['not_approved']);
  });

  it('closes the gate with a freeze that holds now, even for an approved change', async () => {
    const [approved, freeze, recurring] = await Promise.all([
      gantryJson(['change', 'approve', number, '--reason', 'reviewed again'], carol),
      gantryJson(
        [
          'freeze',
          'add',
          '--env',
          'production',
          '--name',
          'incident-freeze',
          '--reason',
          'investigating an outage',
          '--start',
          at(-10, 'UTC'),
          '--end',
          at(60, 'UTC'),
        ],
        admin,
      ),
      gantryJson(
        [
          'freeze',
          'add',
          '--env',
          'staging',
          '--name',
          'weekend',
          '--cron',
          '0 18 * * 5',
          '--duration',
          '62h',
          '--tz',
          ZONE,
        ],
        admin,
      ),
    ]);
    expect(approved.state).toBe('approved');
    expect(freeze).toMatchObject({ kind: 'once', activeNow: true });
    expect(recurring).toMatchObject({ kind: 'recurring', durationMinutes: 62 * 60, timeZone: ZONE });

    const check = await runGantry(['change', 'check', number, '--env', 'production'], { env: admin });
    expect(check.code).toBe(3);
    expect(check.stdout).toContain('NOT ALLOWED');
    expect(check.stdout).toMatch(/frozen\s+production is frozen by 'incident-freeze'/);
    expect(check.stdout).not.toContain('not_approved');
  });

  it('sets a flag and evaluates it for a subject', async () => {
    const flag = await gantryJson(
      [
        'flag',
        'set',
        'new-checkout',
        '--env',
        'staging',
        '--on',
        '--percentage',
        '0',
        '--rule',
        'plan in pro,enterprise',
      ],
      admin,
    );
    expect(flag).toMatchObject({
      enabled: true,
      percentage: 0,
      rules: [{ attribute: 'plan', op: 'in', values: ['pro', 'enterprise'] }],
    });
    const [pro, free] = await Promise.all([
      gantryJson(['flag', 'evaluate', '--env', 'staging', '--subject', 'u-1', '--attr', 'plan:pro'], admin),
      gantryJson(
        [
          'flag',
          'evaluate',
          '--env',
          'staging',
          '--subject',
          'u-1',
          '--attr',
          'plan:free',
          '--attr',
          'region:eu',
        ],
        admin,
      ),
    ]);
    expect(pro.flags).toEqual([
      { key: 'new-checkout', value: true, variant: 'on', reason: 'TARGETING_MATCH' },
    ]);
    expect(free.flags).toEqual([{ key: 'new-checkout', value: false, variant: 'off', reason: 'SPLIT' }]);
  });

  it('prints the calendar feed with the change window, or writes it to a file', async () => {
    const file = path.join(dir, 'changes.ics');
    const [printed, written] = await Promise.all([
      runGantry(['calendar'], { env: admin }),
      runGantry(['calendar', '--env', 'production', '--output', file], { env: admin }),
    ]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toContain('BEGIN:VCALENDAR');
    expect(printed.stdout).toContain(`SUMMARY:${number} Ship shop 2.4.0 [approved]`);
    expect(printed.stdout).toContain('Freeze: incident-freeze (production)');
    expect(written.code, written.stderr).toBe(0);
    const ics = readFileSync(file, 'utf8');
    expect(ics).toContain('BEGIN:VCALENDAR');
    expect(ics).toContain(number);
    expect(ics).not.toContain('Freeze: weekend (staging)');
  });

  it('refuses, before asking the server, what it can tell is incomplete (exit 2)', async () => {
    const [reject, noRisk] = await Promise.all([
      runGantry(['change', 'reject', number], { env: admin }),
      runGantry(
        [
          'change',
          'create',
          '--type',
          'normal',
          '--title',
          'x',
          '--release',
          'shop@2.4.0',
          '--env',
          'production',
          '--window',
          `${at(0)}/${at(60)}`,
        ],
        { env: admin },
      ),
    ]);
    expect(reject.code).toBe(2);
    expect(reject.stderr).toContain('--reason');
    expect(noRisk.code).toBe(2);
    expect(noRisk.stderr).toContain('--impact');
  });
});
