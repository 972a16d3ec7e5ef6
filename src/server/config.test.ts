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

  it.each([
    [{ GANTRY_PORT: 'eighty' }, 'GANTRY_PORT'],
    [{ GANTRY_PORT: '70000' }, 'GANTRY_PORT'],
    [{ GANTRY_DATABASE_URL: 'mysql://x' }, 'GANTRY_DATABASE_URL'],
    [{ GANTRY_LOG_LEVEL: 'loud' }, 'GANTRY_LOG_LEVEL'],
    [{ GANTRY_BOOTSTRAP_ADMIN_TOKEN: 'short' }, 'GANTRY_BOOTSTRAP_ADMIN_TOKEN'],
    [{ GANTRY_PUBLIC_URL: 'ftp://x' }, 'GANTRY_PUBLIC_URL'],
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
