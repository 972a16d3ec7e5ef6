/**
 * Feature flags and "release without deploy" through the real HTTP stack on every database; the
 * release notes go to a real local webhook receiver.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTarGz } from '../../../test/helpers/archives.ts';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import { Notifier } from '../releases/notifier.ts';

for (const kind of testDatabases()) {
  describe(`feature flags on ${kind.name}`, () => {
    let t: TestApp;
    let manager: string;
    let viewer: string;

    beforeEach(async () => {
      t = await startTestApp(kind);
      for (const name of ['staging', 'production'])
        await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name } });
      manager = (await t.userWithToken('release-manager')).token;
      viewer = (await t.userWithToken('viewer')).token;
    });
    afterEach(async () => t.close());

    const set = (key: string, body: Record<string, unknown>, env = 'staging') =>
      t.call('PUT', `/api/v1/environments/${env}/flags/${key}`, { token: manager, body });
    const evaluate = (query: string, headers: Record<string, string> = {}, env = 'staging') =>
      t.call('GET', `/api/v1/environments/${env}/evaluation?${query}`, { token: viewer, headers });

    it('evaluates every flag for a subject in one call, OpenFeature-shaped, with an ETag for cheap polling', async () => {
      expect((await set('new-checkout', { enabled: true, description: 'checkout v2' })).status).toBe(200);
      await set('dark-mode', { enabled: true, percentage: 30 });
      await set('beta-search', {
        enabled: true,
        rules: [{ attribute: 'plan', op: 'in', values: ['pro', 'team'] }],
      });
      await set('old-banner', { enabled: false });

      const res = await evaluate('subject=user-42&attr=plan:pro');
      expect(res.status).toBe(200);
      const byKey = Object.fromEntries(res.body.flags.map((f: { key: string }) => [f.key, f]));
      expect(byKey['new-checkout']).toEqual({
        key: 'new-checkout',
        value: true,
        variant: 'on',
        reason: 'STATIC',
      });
      expect(byKey['beta-search']).toMatchObject({ value: true, reason: 'TARGETING_MATCH' });
      expect(byKey['old-banner']).toMatchObject({ value: false, variant: 'off', reason: 'DISABLED' });
      expect(byKey['dark-mode'].reason).toBe('SPLIT');
      expect(
        (await evaluate('subject=user-42&attr=plan:free')).body.flags.find(
          (f: { key: string }) => f.key === 'beta-search',
        ),
      ).toMatchObject({
        value: false,
        reason: 'DEFAULT',
      });

      const etag = String(res.headers.etag);
      const unchanged = await evaluate('subject=user-42&attr=plan:pro', { 'if-none-match': etag });
      expect(unchanged.status).toBe(304);
      await set('old-banner', { enabled: true });
      const changed = await evaluate('subject=user-42&attr=plan:pro', { 'if-none-match': etag });
      expect(changed.status).toBe(200);
      expect(changed.headers.etag).not.toBe(etag);

      // A subject's answer for a percentage is stable, and about 30% of subjects get it.
      let on = 0;
      for (let i = 0; i < 200; i++) {
        const flags = (await evaluate(`subject=s${i}`)).body.flags;
        if (flags.find((f: { key: string }) => f.key === 'dark-mode').value) on++;
      }
      expect(on).toBeGreaterThan(35);
      expect(on).toBeLessThan(85);
      const again = (await evaluate('subject=s7')).body.flags.find(
        (f: { key: string }) => f.key === 'dark-mode',
      ).value;
      expect(
        (await evaluate('subject=s7')).body.flags.find((f: { key: string }) => f.key === 'dark-mode').value,
      ).toBe(again);

      const bad = await evaluate('subject=x&attr=plan');
      expect(bad.status).toBe(400);
      expect(bad.body.error.message).toContain('key:value');
      const audit = await t.call('GET', '/api/v1/audit?limit=50', { token: ADMIN_TOKEN });
      expect(audit.body.entries.map((e: { action: string }) => e.action)).toEqual(
        expect.arrayContaining(['flag.created', 'flag.changed']),
      );
    });

    it('keeps flag changes in production under change control when the policy asks', async () => {
      await t.call('PATCH', '/api/v1/environments/production', {
        token: ADMIN_TOKEN,
        body: { policy: { flagsUnderChange: true } },
      });
      const refused = await set('new-checkout', { enabled: true }, 'production');
      expect(refused.status).toBe(403);
      expect(refused.body.error.message).toContain('needs an approved change');
      expect(
        (await t.call('GET', '/api/v1/environments/production/flags', { token: viewer })).body.flags,
      ).toEqual([]);
      const notAChange = await set('new-checkout', { enabled: true, change: 'CHG-4040' }, 'production');
      expect(notAChange.status).toBe(404);

      // Under an approved change for production, in its window, the release's flags go on.
      const bytes = makeTarGz({ run: 'echo hi\n' });
      await t.call('POST', '/api/v1/artifacts?component=web&version=2.4.0', {
        token: ADMIN_TOKEN,
        rawBody: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      await t.call('POST', '/api/v1/releases', {
        token: manager,
        body: {
          name: 'shop',
          version: '1',
          components: [{ component: 'web', version: '2.4.0' }],
          flags: ['new-checkout'],
        },
      });
      const change = await t.call('POST', '/api/v1/changes', {
        token: manager,
        body: {
          type: 'normal',
          title: 'Turn on the new checkout',
          release: 'shop@1',
          environments: ['production'],
          windows: [{ start: '2026-11-22T09:00', end: '2026-11-22T11:00' }],
          riskAnswers: { userImpact: 'some', doneBefore: true, backoutTested: true, changesData: false },
        },
      });
      const available = (body: Record<string, unknown>) =>
        t.call('POST', '/api/v1/releases/shop@1/make-available', {
          token: manager,
          body: { environment: 'production', ...body },
        });
      expect((await available({})).status).toBe(403);
      await t.call('POST', `/api/v1/changes/${change.body.id}/submit`, { token: manager, body: {} });
      const early = await available({ change: change.body.number });
      expect(early.status).toBe(403);
      expect(early.body.error.details.reasons.map((r: { code: string }) => r.code)).toEqual(['not_approved']);
      const authority = (await t.userWithToken('change-authority')).token;
      await t.call('POST', `/api/v1/changes/${change.body.id}/approve`, { token: authority, body: {} });
      expect((await available({ change: change.body.number })).status).toBe(200);
      expect(
        (await t.call('GET', '/api/v1/environments/production/flags/new-checkout', { token: viewer })).body
          .enabled,
      ).toBe(true);
    });

    it('makes a release available: its flags go on in one audited act and subscribers get the notes', async () => {
      const received: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];
      let failFirst = true;
      const receiver = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => {
          body += c;
        });
        req.on('end', () => {
          if (failFirst) {
            failFirst = false;
            res.writeHead(503).end();
            return;
          }
          received.push({ headers: req.headers, body });
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      try {
        const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
        expect(
          (await t.call('POST', '/api/v1/subscriptions', { token: ADMIN_TOKEN, body: { url } })).status,
        ).toBe(201);
        await t.call('POST', '/api/v1/subscriptions', {
          token: ADMIN_TOKEN,
          body: { url: `${url}/other`, releaseName: 'other-product' },
        });
        const bytes = makeTarGz({ run: 'echo hi\n' });
        await t.call('POST', '/api/v1/artifacts?component=web&version=2.4.0', {
          token: ADMIN_TOKEN,
          rawBody: bytes,
          headers: { 'content-type': 'application/octet-stream' },
        });
        const made = await t.call('POST', '/api/v1/releases', {
          token: manager,
          body: {
            name: 'shop',
            version: '2026.11',
            components: [
              { component: 'web', digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` },
            ],
            notes: 'One-page checkout.',
            flags: ['new-checkout', 'express-pay'],
          },
        });
        expect(made.status).toBe(201);
        await set('new-checkout', { enabled: false, percentage: 10 });

        const available = await t.call('POST', '/api/v1/releases/shop@2026.11/make-available', {
          token: manager,
          body: { environment: 'staging' },
        });
        expect(available.status, JSON.stringify(available.body)).toBe(200);
        expect(available.body.availableIn).toEqual([expect.objectContaining({ environment: 'staging' })]);
        const flags = (await t.call('GET', '/api/v1/environments/staging/flags', { token: viewer })).body
          .flags;
        expect(flags.map((f: { key: string; enabled: boolean }) => [f.key, f.enabled])).toEqual([
          ['express-pay', true],
          ['new-checkout', true],
        ]);
        const twice = await t.call('POST', '/api/v1/releases/shop@2026.11/make-available', {
          token: manager,
          body: { environment: 'staging' },
        });
        expect(twice.status).toBe(409);

        const notifier = new Notifier({ database: t.db.database, clock: t.clock });
        expect(await notifier.deliverDue()).toBe(0); // the receiver answers 503 once
        expect(await notifier.deliverDue()).toBe(0); // not due yet: it waits before retrying
        t.clock.advance(11_000);
        expect(await notifier.deliverDue()).toBe(1);
        expect(received).toHaveLength(1);
        expect(received[0]?.headers['x-gantry-event']).toBe('release.available');
        expect(JSON.parse(received[0]?.body ?? '{}')).toMatchObject({
          release: { name: 'shop', version: '2026.11' },
          environment: 'staging',
          notes: 'One-page checkout.',
        });
        t.clock.advance(3_600_000);
        expect(await notifier.deliverDue()).toBe(0); // delivered once, never again
      } finally {
        await new Promise((resolve) => receiver.close(resolve));
      }
    });
  });
}
