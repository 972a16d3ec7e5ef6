/** gantry keys generate | add | list | revoke, and gantry dml verify */
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { ArtifactView, KeyView } from '../../protocol/artifacts.ts';
import { keyIdOf } from '../../protocol/key-id.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { renderTable } from '../output.ts';

export function addKeyCommands(program: Command, ctx: CliContext): void {
  const keys = program.command('keys').description('Publisher keys that sign artifacts');

  keys
    .command('generate')
    .description('Make a new Ed25519 key pair here: PREFIX.key (private, mode 0600) and PREFIX.pub.pem')
    .requiredOption('--out <prefix>', 'file name prefix, e.g. ./ci-signing')
    .action(async (o: { out: string }, command: Command) => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const privateFile = `${o.out}.key`;
      const publicFile = `${o.out}.pub.pem`;
      try {
        await writeFile(privateFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
          mode: 0o600,
          flag: 'wx',
        });
      } catch (error) {
        throw new CliError(
          EXIT.usage,
          `Cannot write ${privateFile} (${(error as { code?: string }).code}); it must not exist yet.`,
        );
      }
      await writeFile(publicFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
      const keyId = keyIdOf(publicKey);
      ctx.out(
        command,
        { keyId, privateKey: privateFile, publicKey: publicFile },
        () =>
          `Key ${keyId}\nprivate: ${privateFile} (keep it secret)\npublic:  ${publicFile} (register it: gantry keys add NAME --public-key ${publicFile})\n`,
      );
    });

  keys
    .command('add')
    .description('Trust a publisher’s Ed25519 public key (admin)')
    .argument('<name>', 'who the key belongs to, e.g. "ci release signing"')
    .requiredOption('--public-key <file>', 'the public key, PEM')
    .action(async (name: string, o: { publicKey: string }, command: Command) => {
      const pem = await readFile(o.publicKey, 'utf8').catch(() => {
        throw new CliError(EXIT.usage, `Cannot read ${o.publicKey}.`);
      });
      const key = await ctx
        .client(command)
        .request<KeyView>('POST', '/api/v1/keys', { name, publicKey: pem });
      ctx.out(command, key, () => `Trusted key '${key.name}' as ${key.id}.\n`);
    });

  keys
    .command('list')
    .description('List publisher keys')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx.client(command).request<{ keys: KeyView[] }>('GET', '/api/v1/keys');
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'ID', 'ADDED', 'REVOKED'],
          body.keys.map((k) => [k.name, k.id, k.createdAt, k.revokedAt]),
        ),
      );
    });

  keys
    .command('revoke')
    .description('Stop trusting a publisher key (admin); signatures by it no longer count')
    .argument('<id>', 'key id, e.g. ed25519:…')
    .action(async (id: string, _o: unknown, command: Command) => {
      const key = await ctx
        .client(command)
        .request<KeyView>('DELETE', `/api/v1/keys/${encodeURIComponent(id)}`);
      ctx.out(command, key, () => `Revoked key '${key.name}' (${key.id}) at ${key.revokedAt}.\n`);
    });

  const dml = program.command('dml').description('The media library as a whole');
  dml
    .command('verify')
    .description(
      'Re-hash every stored artifact on the server and report; a mismatch quarantines the artifact',
    )
    .action(async (_o: unknown, command: Command) => {
      const client = ctx.client(command);
      const showProgress = !ctx.json(command) && process.stderr.isTTY === true;
      const results: Array<{ id: string; component: string; version: string; ok: boolean; message: string }> =
        [];
      let after: string | undefined;
      for (;;) {
        const page = await client.request<{ artifacts: ArtifactView[]; nextAfter: string | null }>(
          'GET',
          '/api/v1/artifacts',
          undefined,
          {
            after,
            limit: 200,
          },
        );
        for (const a of page.artifacts) {
          const r = await client.request<{ ok: boolean; message: string }>(
            'POST',
            `/api/v1/artifacts/${a.id}/verify`,
          );
          results.push({
            id: a.id,
            component: a.component,
            version: a.version,
            ok: r.ok,
            message: r.message,
          });
          if (showProgress) ctx.io.stderr(`\rverified ${results.length} artifacts`);
        }
        if (page.nextAfter === null) break;
        after = page.nextAfter;
      }
      if (showProgress) ctx.io.stderr('\n');
      const bad = results.filter((r) => !r.ok);
      ctx.out(command, { checked: results.length, failed: bad.length, results }, () =>
        bad.length === 0
          ? `All ${results.length} artifacts match their digests.\n`
          : `${bad.length} of ${results.length} artifacts FAILED and are quarantined:\n${renderTable(
              ['COMPONENT', 'VERSION', 'PROBLEM', 'ID'],
              bad.map((r) => [r.component, r.version, r.message, r.id]),
            )}`,
      );
      if (bad.length > 0) throw new CliError(EXIT.failed, 'verification failed', null, true);
    });
}
