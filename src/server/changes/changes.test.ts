/**
 * Change enablement through the real HTTP stack on every database: releases, change requests,
 * approvals (test-plan rows A03, A04, L04), freezes, the gate (F26 with the test clock),
 * templates, risk-based approval, conflicts, bookings and hardware moves under change.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTarGz } from '../../../test/helpers/archives.ts';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
// The test clock starts at 2026-11-22T10:00:00Z.
const WINDOW = { start: '2026-11-22T09:00', end: '2026-11-22T12:00', timeZone: 'UTC' };
const RISK_LOW = { userImpact: 'none', doneBefore: true, backoutTested: true, changesData: false };
const RISK_HIGH = { userImpact: 'major', doneBefore: false, backoutTested: false, changesData: true };

for (const kind of testDatabases()) {
  describe(`change enablement on ${kind.name}`, () => {
    let t: TestApp;
    let requester: string;
    let authority: string;
    let authority2: string;
    let emergency: string;
    let webDigest: string;

    beforeEach(async () => {
      t = await startTestApp(kind);
      for (const name of ['staging', 'production']) {
        expect(
          (await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name } })).status,
        ).toBe(201);
      }
      await policy('production', { changeRequired: true, bookable: false });
      requester = (await t.userWithToken('release-manager')).token;
      authority = (await t.userWithToken('change-authority')).token;
      authority2 = (await t.userWithToken('change-authority')).token;
      emergency = (await t.userWithToken('emergency-authority')).token;
      webDigest = await push('web', '2.4.0');
      await push('api', '1.9.1');
    });
    afterEach(async () => t.close());

    async function policy(env: string, p: Record<string, unknown>) {
      const res = await t.call('PATCH', `/api/v1/environments/${env}`, {
        token: ADMIN_TOKEN,
        body: { policy: p },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    }

    async function push(component: string, version: string, kindName = 'package') {
      const bytes =
        kindName === 'package'
          ? makeTarGz({ 'gantry.yaml': 'start: ./run\n', run: `echo ${component} ${version}\n` })
          : Buffer.from(`report for ${component} ${version}: 120 passed\n`);
      const res = await t.call(
        'POST',
        `/api/v1/artifacts?component=${component}&version=${version}&kind=${kindName}`,
        {
          token: ADMIN_TOKEN,
          rawBody: bytes,
          headers: { 'content-type': 'application/octet-stream' },
        },
      );
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return sha(bytes);
    }

    async function release(
      version = '2026.11',
      components: Array<Record<string, string>> = [{ component: 'web', version: '2.4.0' }],
    ) {
      const res = await t.call('POST', '/api/v1/releases', {
        token: requester,
        body: { name: 'shop', version, components, notes: 'New checkout' },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body;
    }

    async function change(body: Record<string, unknown> = {}, token = requester) {
      const res = await t.call('POST', '/api/v1/changes', {
        token,
        body: {
          type: 'normal',
          title: 'Ship shop 2026.11',
          release: 'shop@2026.11',
          environments: ['production'],
          windows: [WINDOW],
          riskAnswers: RISK_LOW,
          backoutPlan: 'roll back to 2.3.9',
          ...body,
        },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body;
    }

    const act = (id: string, action: string, token: string, body: Record<string, unknown> = {}) =>
      t.call('POST', `/api/v1/changes/${id}/${action}`, { token, body });
    const gate = (body: Record<string, unknown>, token = requester) =>
      t.call('POST', '/api/v1/gates/check', { token, body: { environment: 'production', ...body } });
    const codes = (res: { body: { reasons: Array<{ code: string }> } }) =>
      res.body.reasons.map((r) => r.code).sort();

    it('makes a release only from artifacts in the media library, and freezes it once a change is submitted', async () => {
      const missing = await t.call('POST', '/api/v1/releases', {
        token: requester,
        body: {
          name: 'shop',
          version: '1',
          components: [
            { component: 'web', version: '9.9.9' },
            { component: 'api', digest: `sha256:${'1'.repeat(64)}` },
            { component: 'db' },
          ],
        },
      });
      expect(missing.status).toBe(400);
      expect(missing.body.error.details.map((d: { path: string }) => d.path)).toEqual([
        '/components/0',
        '/components/1',
        '/components/2',
      ]);
      expect((await t.call('GET', '/api/v1/releases', { token: requester })).body.releases).toEqual([]);

      const made = await release('2026.11', [
        { component: 'web', version: '2.4.0' },
        {
          component: 'api',
          digest: (await t.call('GET', '/api/v1/artifacts?component=api', { token: ADMIN_TOKEN })).body
            .artifacts[0].digest,
        },
      ]);
      expect(made.components).toEqual([
        { component: 'web', version: '2.4.0', digest: webDigest },
        expect.objectContaining({ component: 'api', version: '1.9.1' }),
      ]);
      const again = await t.call('POST', '/api/v1/releases', {
        token: requester,
        body: { name: 'shop', version: '2026.11', components: [{ component: 'web', version: '2.4.0' }] },
      });
      expect(again.status).toBe(409);
      expect(
        (
          await t.call('PATCH', '/api/v1/releases/shop@2026.11', {
            token: requester,
            body: { notes: 'Checkout v2' },
          })
        ).status,
      ).toBe(200);

      const c = await change();
      expect((await act(c.id, 'submit', requester)).status).toBe(200);
      const locked = await t.call('PATCH', '/api/v1/releases/shop@2026.11', {
        token: requester,
        body: { notes: 'sneaky' },
      });
      expect(locked.status).toBe(409);
      expect(locked.body.error.code).toBe('IMMUTABLE_VERSION');
      expect(locked.body.error.message).toContain(c.number);

      // An artifact a release names cannot be deleted; the refusal names the release and change.
      const web = (await t.call('GET', '/api/v1/artifacts?component=web', { token: ADMIN_TOKEN })).body
        .artifacts[0];
      const del = await t.call('DELETE', `/api/v1/artifacts/${web.id}`, { token: ADMIN_TOKEN });
      expect(del.status).toBe(409);
      expect(del.body.error.message).toContain('release shop@2026.11');
      expect(del.body.error.details.changes).toEqual([`change ${c.number} (submitted)`]);
    });

    it('refuses a change with bad windows, unknown environments or no risk answers, listing every problem', async () => {
      await release();
      const bad = await t.call('POST', '/api/v1/changes', {
        token: requester,
        body: {
          type: 'normal',
          title: 'x',
          release: 'shop@2026.11',
          environments: ['production', 'moon'],
          windows: [
            { start: '2026-11-24T23:00', end: '2026-11-24T22:00', timeZone: 'Europe/Berlin' },
            { start: '2026-11-24T22:00', end: '2026-11-24T23:00', timeZone: 'Mars/Olympus' },
          ],
          riskAnswers: RISK_LOW,
          freezeOverrideReason: 'because',
        },
      });
      expect(bad.status).toBe(400);
      const messages = bad.body.error.details.map((d: { message: string }) => d.message).join(' | ');
      expect(messages).toContain("no environment 'moon'");
      expect(messages).toContain('ends (2026-11-24T22:00) before');
      expect(messages).toContain("'Mars/Olympus' is not an IANA time zone");
      expect(messages).toContain('only an emergency change may override a freeze');
      const noRisk = await t.call('POST', '/api/v1/changes', {
        token: requester,
        body: {
          type: 'normal',
          title: 'x',
          release: 'shop@2026.11',
          environments: ['production'],
          windows: [WINDOW],
        },
      });
      expect(noRisk.status).toBe(400);
      expect(noRisk.body.error.message).toContain('risk questionnaire');
      expect((await t.call('GET', '/api/v1/changes', { token: requester })).body.changes).toEqual([]);
    });

    it('A03: the requester cannot approve, one person counts once, and an edit after approval voids it', async () => {
      await release();
      await policy('production', { approvals: 2 });
      const c = await change();
      expect(c.number).toBe('CHG-1001');
      expect(c.state).toBe('draft');
      expect((await act(c.id, 'approve', authority)).body.error.code).toBe('ILLEGAL_TRANSITION');
      expect((await act(c.id, 'submit', requester)).body.state).toBe('submitted');

      const own = await act(c.id, 'approve', requester);
      expect(own.status).toBe(403); // a release manager lacks the permission at all
      const admin = await t.userWithToken('admin');
      const adminsOwn = await change({ title: 'admin raises' }, admin.token);
      await act(adminsOwn.id, 'submit', admin.token);
      const selfApproval = await act(adminsOwn.id, 'approve', admin.token);
      expect(selfApproval.status).toBe(403);
      expect(selfApproval.body.error.message).toContain('requester of a change cannot approve');

      const first = await act(c.id, 'approve', authority, { reason: 'looks fine' });
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({ state: 'submitted', approvalsValid: 1, approvalsRequired: 2 });
      const twice = await act(c.id, 'approve', authority);
      expect(twice.status).toBe(409);
      expect(twice.body.error.message).toContain('one person counts once');
      const stale = await act(c.id, 'approve', authority2, { contentDigest: `sha256:${'0'.repeat(64)}` });
      expect(stale.status).toBe(409);
      const second = await act(c.id, 'approve', authority2, { contentDigest: first.body.contentDigest });
      expect(second.body).toMatchObject({ state: 'approved', approvalsValid: 2 });

      // A title fix keeps the approvals; a new window voids them.
      const retitled = await t.call('PATCH', `/api/v1/changes/${c.id}`, {
        token: requester,
        body: { title: 'Ship shop' },
      });
      expect(retitled.body).toMatchObject({ state: 'approved', approvalsValid: 2 });
      const edited = await t.call('PATCH', `/api/v1/changes/${c.id}`, {
        token: requester,
        body: { windows: [{ ...WINDOW, end: '2026-11-22T13:00' }] },
      });
      expect(edited.body.state).toBe('submitted');
      expect(edited.body.approvalsValid).toBe(0);
      expect(edited.body.approvals.map((a: { current: boolean }) => a.current)).toEqual([false, false]);
      expect(edited.body.history.at(-1).reason).toContain('2 approval(s) no longer count');
      expect((await gate({ change: c.id })).body.reasons[0].code).toBe('not_approved');
      // The same people may approve the new content.
      await act(c.id, 'approve', authority);
      expect((await act(c.id, 'approve', authority2)).body.state).toBe('approved');

      const audit = await t.call('GET', '/api/v1/audit?limit=200', { token: ADMIN_TOKEN });
      const actions = audit.body.entries.map((e: { action: string }) => e.action);
      expect(actions).toEqual(
        expect.arrayContaining([
          'change.created',
          'change.submitted',
          'change.approval_recorded',
          'change.approved',
          'change.edited',
        ]),
      );
    });

    it('A04 and F26: the gate names every reason, and the window is judged by the server clock', async () => {
      await release();
      await policy('production', { requireSignature: true });
      const none = await gate({ release: 'shop@2026.11' });
      expect(codes(none)).toEqual(['change_required', 'unsigned_artifact']);

      const c = await change({
        windows: [{ start: '2026-11-22T10:30', end: '2026-11-22T11:00', timeZone: 'UTC' }],
      });
      await act(c.id, 'submit', requester);
      expect(codes(await gate({ change: c.id }))).toEqual([
        'not_approved',
        'outside_window',
        'unsigned_artifact',
      ]);
      await act(c.id, 'approve', authority);
      expect(codes(await gate({ change: c.id }))).toEqual(['outside_window', 'unsigned_artifact']);
      await policy('production', { requireSignature: false });
      t.clock.advance(30 * 60_000); // 10:30, the window opens
      const open = await gate({ change: c.id });
      expect(open.body).toMatchObject({ allowed: true, reasons: [] });
      t.clock.advance(30 * 60_000); // 11:00, it has closed
      const closed = await gate({ change: c.id });
      expect(codes(closed)).toEqual(['outside_window']);
      expect(closed.body.reasons[0].message).toContain('2026-11-22T10:30Z–2026-11-22T11:00Z');

      // Another environment, or another release, is not what the change approved.
      expect(codes(await gate({ change: c.id, environment: 'staging' }))).toEqual(
        expect.arrayContaining(['environment_not_in_change']),
      );
    });

    it('a freeze stops deployments, and only an emergency change with a reason and an emergency approver gets through', async () => {
      await release();
      const badCron = await t.call('POST', '/api/v1/freezes', {
        token: authority,
        body: { environment: 'production', name: 'weekend', cron: '0 25 * * 5', durationMinutes: 60 },
      });
      expect(badCron.status).toBe(400);
      expect(badCron.body.error.message).toContain('not a valid cron expression');
      const both = await t.call('POST', '/api/v1/freezes', {
        token: authority,
        body: {
          environment: 'production',
          name: 'x',
          start: '2026-11-22T00:00',
          end: '2026-11-23T00:00',
          cron: '0 0 * * *',
          durationMinutes: 5,
        },
      });
      expect(both.status).toBe(400);
      // Sunday 2026-11-22 10:00 UTC is inside "every Friday 18:00 Berlin for 3 days".
      const freeze = await t.call('POST', '/api/v1/freezes', {
        token: authority,
        body: {
          environment: 'production',
          name: 'weekend',
          cron: '0 18 * * 5',
          durationMinutes: 3 * 24 * 60,
          timeZone: 'Europe/Berlin',
        },
      });
      expect(freeze.status).toBe(201);
      expect(freeze.body).toMatchObject({
        activeNow: true,
        next: { start: '2026-11-20T17:00:00.000Z', end: '2026-11-23T17:00:00.000Z' },
      });

      const normal = await change();
      await act(normal.id, 'submit', requester);
      await act(normal.id, 'approve', authority);
      const frozen = await gate({ change: normal.id });
      expect(codes(frozen)).toEqual(['frozen']);

      const urgent = await change({
        type: 'emergency',
        title: 'Fix checkout outage',
        riskAnswers: RISK_HIGH,
        freezeOverrideReason: 'checkout is down',
      });
      await act(urgent.id, 'submit', requester);
      const byAuthority = await act(urgent.id, 'approve', authority);
      expect(byAuthority.status).toBe(403);
      expect(byAuthority.body.error.message).toContain('emergency-authority');
      const approved = await act(urgent.id, 'approve', emergency, { reason: 'outage' });
      expect(approved.body).toMatchObject({ state: 'approved', type: 'emergency', approvalsRequired: 1 });
      const through = await gate({ change: urgent.id });
      expect(through.body.allowed).toBe(true);
      expect(through.body.notes.map((n: { code: string }) => n.code)).toEqual([
        'emergency',
        'freeze_overridden',
      ]);
      expect(through.body.notes[1].message).toContain('checkout is down');

      await t.call('DELETE', `/api/v1/freezes/${freeze.body.id}`, { token: authority });
      expect((await gate({ change: normal.id })).body.allowed).toBe(true);
    });

    it('L04: twenty parallel decisions on one change revision have exactly one winner', async () => {
      await release();
      const c = await change();
      const submitted = (await act(c.id, 'submit', requester)).body;
      const authorities = await Promise.all(
        Array.from({ length: 13 }, () => t.userWithToken('change-authority')),
      );
      const attempts = [
        ...authorities
          .slice(0, 7)
          .map((a) => act(c.id, 'approve', a.token, { expectedRevision: submitted.revision })),
        ...authorities
          .slice(7)
          .map((a) => act(c.id, 'reject', a.token, { expectedRevision: submitted.revision, reason: 'no' })),
        ...Array.from({ length: 7 }, () =>
          act(c.id, 'cancel', requester, { expectedRevision: submitted.revision, reason: 'withdrawn' }),
        ),
      ];
      const results = await Promise.all(attempts);
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 409)).toHaveLength(19);
      const final = await t.call('GET', `/api/v1/changes/${c.id}`, { token: requester });
      const winner = results.find((r) => r.status === 200)?.body;
      expect(final.body.state).toBe(winner.state);
      expect(final.body.revision).toBe(submitted.revision + 1);
      expect(final.body.history).toHaveLength(3); // create, submit, the one decision
      expect(final.body.approvals.length).toBeLessThanOrEqual(1);

      // The same person approving twice at once: one approval, one 409.
      const other = await change({ title: 'second' });
      await policy('production', { approvals: 2 });
      await act(other.id, 'submit', requester);
      const pair = await Promise.all([
        act(other.id, 'approve', authority),
        act(other.id, 'approve', authority),
      ]);
      expect(pair.map((r) => r.status).sort()).toEqual([200, 409]);
      expect(
        (await t.call('GET', `/api/v1/changes/${other.id}`, { token: requester })).body.approvalsValid,
      ).toBe(1);
    });

    it('walks a change through its whole life, and refuses every illegal step', async () => {
      await release();
      const c = await change();
      for (const [action, token, state] of [
        ['submit', requester, 'submitted'],
        ['approve', authority, 'approved'],
        ['schedule', ADMIN_TOKEN, 'scheduled'],
        ['start', ADMIN_TOKEN, 'implementing'],
        ['complete', ADMIN_TOKEN, 'implemented'],
        ['review', authority, 'reviewed'],
        ['close', authority, 'closed'],
      ] as const) {
        const res = await act(c.id, action, token);
        expect(res.status, `${action}: ${JSON.stringify(res.body)}`).toBe(200);
        expect(res.body.state).toBe(state);
      }
      const after = await act(c.id, 'cancel', requester, { reason: 'too late' });
      expect(after.status).toBe(409);
      expect(after.body.error.message).toContain('final');
      const noReason = await act(c.id, 'cancel', requester);
      expect(noReason.status).toBe(400);
      const edit = await t.call('PATCH', `/api/v1/changes/${c.id}`, {
        token: requester,
        body: { title: 'x' },
      });
      expect(edit.status).toBe(409);
    });

    it('a standard change is pre-approved by its template, only within the template', async () => {
      await release();
      const tpl = await t.call('POST', '/api/v1/change-templates', {
        token: authority,
        body: {
          name: 'web-patch',
          components: ['web'],
          environments: ['staging', 'production'],
          strategies: ['rolling'],
        },
      });
      expect(tpl.status).toBe(201);
      const c = await change({ type: 'standard', template: 'web-patch', riskAnswers: undefined });
      const submitted = await act(c.id, 'submit', requester);
      expect(submitted.body.state).toBe('approved');
      expect(submitted.body.approvals[0]).toMatchObject({ approver: 'template:web-patch', automatic: true });
      expect(codes(await gate({ change: c.id, strategy: 'big-bang' }))).toEqual(['strategy_not_allowed']);
      expect((await gate({ change: c.id, strategy: 'rolling' })).body.allowed).toBe(true);

      await release('2026.12', [
        { component: 'web', version: '2.4.0' },
        { component: 'api', version: '1.9.1' },
      ]);
      const outside = await t.call('POST', '/api/v1/changes', {
        token: requester,
        body: {
          type: 'standard',
          template: 'web-patch',
          title: 'x',
          release: 'shop@2026.12',
          environments: ['production'],
          windows: [WINDOW],
        },
      });
      expect(outside.status).toBe(400);
      expect(outside.body.error.message).toContain('does not cover component api');
    });

    it('requires passing evidence where the policy asks, and approves low-risk changes by policy when it passes', async () => {
      await release();
      await policy('production', { requireEvidence: true, autoApproveLowRisk: true });
      const c = await change();
      expect((await act(c.id, 'submit', requester)).body.state).toBe('submitted'); // no evidence yet
      const refused = await act(c.id, 'approve', authority);
      expect(refused.status).toBe(409);
      expect(refused.body.error.message).toContain('passing evidence');

      const report = await push('shop-tests', '2026.11', 'document');
      const failing = await t.call('POST', '/api/v1/releases/shop@2026.11/evidence', {
        token: requester,
        body: { name: 'e2e', kind: 'test-report', digest: report, passed: false, summary: '3 failed' },
      });
      expect(failing.body.evidenceSummary).toBe('failed');
      expect((await act(c.id, 'approve', authority)).status).toBe(409);
      const notInLibrary = await t.call('POST', '/api/v1/releases/shop@2026.11/evidence', {
        token: requester,
        body: { name: 'scan', kind: 'scan', digest: `sha256:${'2'.repeat(64)}`, passed: true },
      });
      expect(notInLibrary.status).toBe(400);

      await release('2026.11.1');
      await t.call('POST', '/api/v1/releases/shop@2026.11.1/evidence', {
        token: requester,
        body: { name: 'e2e', kind: 'test-report', digest: report, passed: true },
      });
      const auto = await change({ release: 'shop@2026.11.1' });
      const submitted = await act(auto.id, 'submit', requester);
      expect(submitted.body.state).toBe('approved');
      expect(submitted.body.approvals[0]).toMatchObject({ approver: 'policy:risk-based', automatic: true });
      const highRisk = await change({ release: 'shop@2026.11.1', riskAnswers: RISK_HIGH });
      expect((await act(highRisk.id, 'submit', requester)).body.state).toBe('submitted');
      expect(highRisk.approvalsRequired).toBe(2);
    });

    it('lifecycle: production only after the release succeeded in staging', async () => {
      await release();
      expect(
        (
          await t.call('PUT', '/api/v1/lifecycles/shop-line', {
            token: ADMIN_TOKEN,
            body: { releaseName: 'shop', phases: ['staging', 'production'] },
          })
        ).status,
      ).toBe(200);
      const c = await change();
      await act(c.id, 'submit', requester);
      await act(c.id, 'approve', authority);
      const blocked = await gate({ change: c.id });
      expect(codes(blocked)).toEqual(['lifecycle_not_met']);
      expect(blocked.body.reasons[0].message).toContain('succeed in staging');
      const bogus = await t.call('POST', '/api/v1/releases/shop@2026.11/outcomes', {
        token: requester,
        body: { environment: 'staging', outcome: 'succeeded', changeId: 'no-such-change' },
      });
      expect(bogus.status).toBe(404);
      const wrongChange = await t.call('POST', '/api/v1/releases/shop@2026.11/outcomes', {
        token: requester,
        body: { environment: 'staging', outcome: 'succeeded', changeId: c.number },
      });
      expect(wrongChange.status).toBe(409); // the change covers production, not staging
      expect(codes(await gate({ change: c.id }))).toEqual(['lifecycle_not_met']);
      await t.call('POST', '/api/v1/releases/shop@2026.11/outcomes', {
        token: requester,
        body: { environment: 'staging', outcome: 'succeeded', note: 'tested by QA' },
      });
      expect((await gate({ change: c.id })).body.allowed).toBe(true);
      const shown = await t.call('GET', '/api/v1/releases/shop@2026.11', { token: requester });
      expect(shown.body.lifecycle).toEqual([
        expect.objectContaining({ environment: 'staging', outcome: 'succeeded', source: 'recorded' }),
      ]);
    });

    it('flags two approved changes on the same component in overlapping windows, on both', async () => {
      await release();
      const a = await change({ title: 'A' });
      const b = await change({
        title: 'B',
        windows: [{ start: '2026-11-22T11:00', end: '2026-11-22T14:00' }],
      });
      const far = await change({
        title: 'C',
        windows: [{ start: '2026-11-25T11:00', end: '2026-11-25T14:00' }],
      });
      for (const x of [a, b, far]) {
        await act(x.id, 'submit', requester);
        await act(x.id, 'approve', authority);
      }
      const shownA = (await t.call('GET', `/api/v1/changes/${a.id}`, { token: requester })).body;
      const shownB = (await t.call('GET', `/api/v1/changes/${b.id}`, { token: requester })).body;
      const shownC = (await t.call('GET', `/api/v1/changes/${far.id}`, { token: requester })).body;
      expect(shownA.conflicts).toEqual([expect.objectContaining({ change: b.number })]);
      expect(shownB.conflicts).toEqual([expect.objectContaining({ change: a.number })]);
      expect(shownA.conflicts[0].reason).toContain('both change web');
      expect(shownC.conflicts).toEqual([]);
      // The environment filter matches names exactly: `_` is no wildcard.
      const like = await t.call('GET', '/api/v1/changes?environment=pro_uction', { token: requester });
      expect(like.body.changes).toEqual([]);
      const exact = await t.call('GET', '/api/v1/changes?environment=production', { token: requester });
      expect(exact.body.changes).toHaveLength(3);
    });

    it('books test environments, refusing overlaps unless asked, and never production', async () => {
      const book = (body: Record<string, unknown>) =>
        t.call('POST', '/api/v1/bookings', { token: requester, body });
      const first = await book({
        environment: 'staging',
        team: 'payments',
        start: '2026-11-23T09:00',
        end: '2026-11-27T17:00',
        timeZone: 'Europe/Berlin',
      });
      expect(first.status).toBe(201);
      expect(first.body.start).toBe('2026-11-23T08:00:00.000Z');
      const clash = await book({
        environment: 'staging',
        team: 'search',
        start: '2026-11-25T09:00',
        end: '2026-11-25T17:00',
      });
      expect(clash.status).toBe(409);
      expect(clash.body.error.message).toContain('payments');
      const forced = await book({
        environment: 'staging',
        team: 'search',
        start: '2026-11-25T09:00',
        end: '2026-11-25T17:00',
        allowOverlap: true,
      });
      expect(forced.body.overlaps).toEqual([first.body.id]);
      const list = await t.call('GET', '/api/v1/bookings?environment=staging', { token: requester });
      expect(list.body.bookings.find((b: { id: string }) => b.id === first.body.id).overlaps).toEqual([
        forced.body.id,
      ]);
      const prod = await book({
        environment: 'production',
        team: 'x',
        start: '2026-11-23T09:00',
        end: '2026-11-23T10:00',
      });
      expect(prod.status).toBe(403);
      const backwards = await book({
        environment: 'staging',
        team: 'x',
        start: '2026-11-23T10:00',
        end: '2026-11-23T09:00',
      });
      expect(backwards.status).toBe(400);
    });

    it('serves the calendar as iCalendar, to a calendar program with the token as Basic password', async () => {
      await release();
      const c = await change();
      await act(c.id, 'submit', requester);
      await t.call('POST', '/api/v1/freezes', {
        token: authority,
        body: {
          environment: 'production',
          name: 'year end',
          start: '2026-12-20T00:00',
          end: '2027-01-04T00:00',
          timeZone: 'Europe/Berlin',
        },
      });
      await t.call('POST', '/api/v1/bookings', {
        token: requester,
        body: {
          environment: 'staging',
          team: 'payments',
          start: '2026-11-23T09:00',
          end: '2026-11-24T17:00',
        },
      });
      const basic = Buffer.from(`calendar:${requester}`).toString('base64');
      const ics = await t.call('GET', '/api/v1/calendar.ics', {
        headers: { authorization: `Basic ${basic}` },
      });
      expect(ics.status).toBe(200);
      expect(String(ics.headers['content-type'])).toContain('text/calendar');
      const text = String(ics.body);
      expect(text).toContain('BEGIN:VCALENDAR');
      expect(text).toContain(`SUMMARY:${c.number} Ship shop 2026.11 [submitted]`);
      expect(text).toContain('DTSTART:20261122T090000Z');
      expect(text).toContain('SUMMARY:Freeze: year end (production)');
      expect(text).toContain('SUMMARY:Booked: staging by payments');
      const prodOnly = String(
        (await t.call('GET', '/api/v1/calendar.ics?environment=staging', { token: requester })).body,
      );
      expect(prodOnly).not.toContain(c.number);
      // Basic is for reading only.
      const write = await t.call('POST', '/api/v1/freezes', {
        headers: { authorization: `Basic ${basic}` },
        body: { environment: 'staging', name: 'x', start: '2026-12-01T00:00', end: '2026-12-02T00:00' },
      });
      expect(write.status).toBe(401);
    });

    it('moves hardware into a controlled environment only under an approved change in its window', async () => {
      await release();
      await t.call('POST', '/api/v1/hardware', {
        token: ADMIN_TOKEN,
        body: { assetTag: 'SW-1', model: 'switch', vendor: 'acme', serial: 's1', location: 'store' },
      });
      const move = (changeId?: string) =>
        t.call('POST', '/api/v1/hardware/SW-1/moves', {
          token: ADMIN_TOKEN,
          body: {
            to: 'deployed',
            location: 'rack 4',
            environment: 'production',
            ...(changeId ? { changeId } : {}),
          },
        });
      const without = await move();
      expect(without.status).toBe(403);
      expect(without.body.error.message).toContain('needs an approved change');
      const c = await change();
      await act(c.id, 'submit', requester);
      expect((await move(c.number)).body.error.details.reasons.map((r: { code: string }) => r.code)).toEqual([
        'not_approved',
      ]);
      await act(c.id, 'approve', authority);
      const moved = await move(c.number);
      expect(moved.status).toBe(201);
      expect(moved.body.moves.at(-1).changeId).toBe(c.number);
      // Staging is not controlled: no change needed.
      await t.call('POST', '/api/v1/hardware', {
        token: ADMIN_TOKEN,
        body: { assetTag: 'SW-2', model: 'switch', vendor: 'acme', serial: 's2', location: 'store' },
      });
      const free = await t.call('POST', '/api/v1/hardware/SW-2/moves', {
        token: ADMIN_TOKEN,
        body: { to: 'deployed', location: 'lab', environment: 'staging' },
      });
      expect(free.status).toBe(201);
    });

    it('a supplier sees and acts on its own changes only', async () => {
      await release();
      for (const name of ['storage-co', 'net-co'])
        await t.call('POST', '/api/v1/suppliers', { token: ADMIN_TOKEN, body: { name } });
      const mk = async (supplier: string) => {
        const u = await t.call('POST', '/api/v1/users', {
          token: ADMIN_TOKEN,
          body: { username: `${supplier}-eng`, role: 'supplier', supplier },
        });
        expect(u.status, JSON.stringify(u.body)).toBe(201);
        return (
          await t.call('POST', '/api/v1/tokens', {
            token: ADMIN_TOKEN,
            body: { name: 't', userId: u.body.id },
          })
        ).body.secret as string;
      };
      const storage = await mk('storage-co');
      const net = await mk('net-co');
      const mine = await change({ title: 'Firmware 5.2 on the arrays' }, storage);
      expect(
        (await t.call('GET', '/api/v1/changes', { token: storage })).body.changes.map(
          (c: { id: string }) => c.id,
        ),
      ).toEqual([mine.id]);
      expect((await t.call('GET', '/api/v1/changes', { token: net })).body.changes).toEqual([]);
      expect((await t.call('GET', `/api/v1/changes/${mine.id}`, { token: net })).status).toBe(404);
      expect((await act(mine.id, 'submit', net)).status).toBe(404);
      expect((await act(mine.id, 'submit', storage)).status).toBe(200);
    });
  });
}
