/**
 * First start: with no users at all, Gantry creates the `admin` user. Its random password goes to
 * a file in the data directory readable only by the server's OS user (never to the log); the file
 * is removed once admin sets a password of their own. A GANTRY_BOOTSTRAP_ADMIN_TOKEN given on that
 * first start becomes admin's first API token, for automation.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SYSTEM_ACTOR } from './audit/audit-log.ts';
import { issueToken } from './tokens/token-service.ts';
import { inTransaction, type TransactionDeps } from './unit-of-work.ts';
import { hashPassword } from './users/passwords.ts';
import { UserStore } from './users/user-store.ts';

export const BOOTSTRAP_ADMIN = 'admin';
export const PASSWORD_FILE = 'initial-admin-password';

export interface BootstrapResult {
  created: boolean;
  passwordFile: string | null;
  tokenCreated: boolean;
}

export function passwordFilePath(dataDir: string): string {
  return path.join(dataDir, PASSWORD_FILE);
}

export async function ensureFirstAdmin(
  deps: TransactionDeps,
  options: { dataDir: string; bootstrapToken: string | undefined },
): Promise<BootstrapResult> {
  const password = randomBytes(18).toString('base64url');
  const passwordHash = await hashPassword(password);
  const file = passwordFilePath(options.dataDir);
  return inTransaction(deps, SYSTEM_ACTOR, async (uow) => {
    // The transaction holds the audit-chain lock, so two replicas starting together cannot both
    // see an empty user table.
    const users = new UserStore(uow.db);
    if ((await users.count()) > 0) {
      throw new NothingToDo();
    }
    await uow.audit({
      action: 'system.initialised',
      subject: 'system',
      details: { firstAdmin: BOOTSTRAP_ADMIN },
    });
    const user = await users.insert({
      id: randomUUID(),
      username: BOOTSTRAP_ADMIN,
      displayName: 'Administrator',
      role: 'admin',
      passwordHash,
      createdAt: uow.now.toISOString(),
    });
    await uow.audit({
      action: 'user.created',
      subject: `user:${user.id}`,
      details: { username: user.username, role: user.role, hasPassword: true, bootstrap: true },
    });
    if (options.bootstrapToken !== undefined) {
      await issueToken(uow, {
        userId: user.id,
        username: user.username,
        name: 'bootstrap',
        expiresAt: null,
        secret: options.bootstrapToken,
      });
    }
    // Written inside the transaction: if the file cannot be written, no admin is created either.
    rmSync(file, { force: true });
    writeFileSync(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
    return { created: true, passwordFile: file, tokenCreated: options.bootstrapToken !== undefined };
  }).catch((error: unknown) => {
    if (error instanceof NothingToDo) return { created: false, passwordFile: null, tokenCreated: false };
    throw error;
  });
}

/** Removes the bootstrap password file once it is no longer the admin's password. */
export function forgetBootstrapPassword(dataDir: string, username: string): void {
  if (username === BOOTSTRAP_ADMIN) rmSync(passwordFilePath(dataDir), { force: true });
}

class NothingToDo extends Error {}
