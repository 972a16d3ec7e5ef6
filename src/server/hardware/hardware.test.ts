/** The hardware store through the real HTTP stack on every database. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';

const CSV_HEADER = 'asset_tag,model,vendor,serial,firmware_version,location';

for (const kind of testDatabases()) {
  describe(`hardware store on ${kind.name}`, () => {
    let t: TestApp;
    beforeEach(async () => {
      t = await startTestApp(kind);
    });
    afterEach(async () => t.close());

    const add = (assetTag: string, extra: Record<string, string> = {}) =>
      t.call('POST', '/api/v1/hardware', {
        token: ADMIN_TOKEN,
        body: {
          assetTag,
          model: 'SSD-4T',
          vendor: 'Acme',
          serial: `SN-${assetTag}`,
          location: 'store-1',
          firmwareVersion: '1.0',
          ...extra,
        },
      });
    const importCsv = (csv: string) =>
      t.call('POST', '/api/v1/hardware/import', {
        token: ADMIN_TOKEN,
        rawBody: csv,
        headers: { 'content-type': 'text/csv' },
      });

    it('adds items, refuses a repeated asset tag, and filters by firmware', async () => {
      expect((await add('A-1')).status).toBe(201);
      expect((await add('A-2', { firmwareVersion: '2.0' })).status).toBe(201);
      const again = await add('A-1');
      expect(again.status).toBe(409);
      expect(again.body.error.message).toContain('A-1');
      const v2 = await t.call('GET', '/api/v1/hardware?firmwareVersion=2.0', { token: ADMIN_TOKEN });
      expect(v2.body.items.map((i: { assetTag: string }) => i.assetTag)).toEqual(['A-2']);
    });

    it('moves an item out to a target and back, keeping every move in its history and the audit chain', async () => {
      await add('B-1');
      const reserve = await t.call('POST', '/api/v1/hardware/B-1/moves', {
        token: ADMIN_TOKEN,
        body: { to: 'reserved', note: 'for rack 7' },
      });
      expect(reserve.status).toBe(201);
      const deploy = await t.call('POST', '/api/v1/hardware/B-1/moves', {
        token: ADMIN_TOKEN,
        body: {
          to: 'deployed',
          target: 'storage-07',
          location: 'dc-east',
          changeId: 'CHG-42',
          firmwareVersion: '1.1',
        },
      });
      expect(deploy.body.item).toMatchObject({
        state: 'deployed',
        target: 'storage-07',
        location: 'dc-east',
        firmwareVersion: '1.1',
      });
      await t.call('POST', '/api/v1/hardware/B-1/moves', {
        token: ADMIN_TOKEN,
        body: { to: 'returned', location: 'store-1' },
      });
      const shown = await t.call('GET', '/api/v1/hardware/B-1', { token: ADMIN_TOKEN });
      expect(
        shown.body.moves.map((m: { fromState: string; toState: string }) => `${m.fromState}>${m.toState}`),
      ).toEqual(['in_store>reserved', 'reserved>deployed', 'deployed>returned']);
      expect(shown.body.moves[1]).toMatchObject({
        target: 'storage-07',
        changeId: 'CHG-42',
        actor: 'user:admin',
      });
      const audit = await t.call('GET', '/api/v1/audit?action=hardware.moved', { token: ADMIN_TOKEN });
      expect(audit.body.entries).toHaveLength(3);
    });

    it('refuses an illegal move, naming the moves that are allowed, and changes nothing', async () => {
      await add('C-1');
      await t.call('POST', '/api/v1/hardware/C-1/moves', { token: ADMIN_TOKEN, body: { to: 'retired' } });
      const back = await t.call('POST', '/api/v1/hardware/C-1/moves', {
        token: ADMIN_TOKEN,
        body: { to: 'in_store' },
      });
      expect(back.status).toBe(409);
      expect(back.body.error.code).toBe('ILLEGAL_TRANSITION');
      expect(back.body.error.message).toContain('retired');
      await add('C-2');
      const returned = await t.call('POST', '/api/v1/hardware/C-2/moves', {
        token: ADMIN_TOKEN,
        body: { to: 'returned' },
      });
      expect(returned.body.error.message).toContain('reserved or deployed or retired');
      const deployNowhere = await t.call('POST', '/api/v1/hardware/C-2/moves', {
        token: ADMIN_TOKEN,
        body: { to: 'deployed' },
      });
      expect(deployNowhere.status).toBe(400);
      expect((await t.call('GET', '/api/v1/hardware/C-2', { token: ADMIN_TOKEN })).body.moves).toEqual([]);
    });

    it('imports a CSV all at once', async () => {
      const res = await importCsv(
        `${CSV_HEADER}\nD-1,SSD-4T,Acme,S1,1.0,store-1\nD-2,SSD-4T,Acme,S2,,store-2\n`,
      );
      expect(res.status).toBe(201);
      expect(res.body.imported).toBe(2);
      expect(res.body.items[1]).toMatchObject({ assetTag: 'D-2', firmwareVersion: null, state: 'in_store' });
    });

    it('imports nothing when any line is bad, and reports each bad line', async () => {
      await add('E-0');
      const csv = [
        CSV_HEADER,
        '',
        'E-1,SSD-4T,Acme,S1,1.0,store-1',
        'E-2,SSD-4T,,S2,1.0,store-1',
        'E-1,SSD-4T,Acme,S3,1.0,store-1',
        'E 4,SSD-4T,Acme,S4,1.0,store-1',
        'E-5,SSD-4T,Acme,S5',
        'E-6,SSD-4T,Acme,S6,1.0,store-1',
      ].join('\n');
      const res = await importCsv(csv);
      expect(res.status).toBe(400);
      // Line numbers are the file's own, counting the blank line.
      expect(res.body.error.details.map((d: { line: number }) => d.line)).toEqual([4, 5, 6, 7]);
      expect(res.body.error.details[0].message).toContain('vendor');
      expect(res.body.error.details[1].message).toContain('repeats line 3');
      const existing = await importCsv(`${CSV_HEADER}\nE-7,SSD,Acme,S7,1,s\nE-0,SSD,Acme,S8,1,s`);
      expect(existing.body.error.details).toEqual([
        { line: 3, message: "asset tag 'E-0' is already in the store" },
      ]);
      const all = await t.call('GET', '/api/v1/hardware', { token: ADMIN_TOKEN });
      expect(all.body.items.map((i: { assetTag: string }) => i.assetTag)).toEqual(['E-0']);
    });

    it('refuses a CSV without the expected header', async () => {
      const res = await importCsv('tag,model\nX,Y');
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain(CSV_HEADER);
    });
  });
}
