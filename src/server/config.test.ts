import { describe, expect, it } from 'vitest';
import { GantryError } from '../core/errors.ts';
import { loadServerConfig } from './config.ts';

describe('server configuration', () => {
  it('defaults to loopback, port 8080 and ./.gantry on SQLite', () => {
    const config = loadServerConfig({}, {}, '/srv');
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      dataDir: '/srv/.gantry',
      databaseUrl: undefined,
    });
  });

  it('takes flags over GANTRY_* variables', () => {
    const config = loadServerConfig(
      { GANTRY_PORT: '9000', GANTRY_HOST: '0.0.0.0', GANTRY_DATA_DIR: '/env' },
      { port: '9100' },
      '/srv',
    );
    expect(config).toMatchObject({ port: 9100, host: '0.0.0.0', dataDir: '/env' });
  });

  it('trusts X-Forwarded-For only from a given number of hops or given proxies', () => {
    expect(loadServerConfig({}).trustProxy).toBe(false);
    expect(loadServerConfig({ GANTRY_TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadServerConfig({ GANTRY_TRUST_PROXY: '10.0.0.5, 10.1.0.0/16' }).trustProxy).toEqual([
      '10.0.0.5',
      '10.1.0.0/16',
    ]);
  });

  it.each([
    [{ GANTRY_PORT: 'eighty' }, 'GANTRY_PORT'],
    [{ GANTRY_PORT: '70000' }, 'GANTRY_PORT'],
    [{ GANTRY_DATABASE_URL: 'mysql://x' }, 'GANTRY_DATABASE_URL'],
    [{ GANTRY_LOG_LEVEL: 'loud' }, 'GANTRY_LOG_LEVEL'],
    [{ GANTRY_BOOTSTRAP_ADMIN_TOKEN: 'short' }, 'GANTRY_BOOTSTRAP_ADMIN_TOKEN'],
    [{ GANTRY_PUBLIC_URL: 'ftp://x' }, 'GANTRY_PUBLIC_URL'],
    [{ GANTRY_TRUST_PROXY: 'true' }, 'GANTRY_TRUST_PROXY'],
    [{ GANTRY_TRUST_PROXY: 'proxy.example' }, 'GANTRY_TRUST_PROXY'],
    [{ GANTRY_DML_MAX_BYTES: 'lots' }, 'GANTRY_DML_MAX_BYTES'],
    [{ FAILPOINTS: 'dml.after_blob_write=explode' }, 'FAILPOINTS'],
  ])('refuses %j, naming %s', (env, name) => {
    try {
      loadServerConfig(env);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(GantryError);
      expect((error as GantryError).code).toBe('CONFIG_INVALID');
      expect((error as GantryError).message).toContain(name);
    }
  });
});
