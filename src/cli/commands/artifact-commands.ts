/** gantry artifact push | list | show | pull | verify | sign | delete | prune */
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { ARTIFACT_KINDS, signedStatement } from '../../core/artifacts.ts';
import type { ArtifactView } from '../../protocol/artifacts.ts';
import { keyIdOf } from '../../protocol/key-id.ts';
import type { ApiClient } from '../api-client.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { keyValues, renderTable } from '../output.ts';
import { startProgress } from '../progress.ts';

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Accepts an artifact id or COMPONENT@VERSION. */
export async function resolveArtifact(client: ApiClient, ref: string): Promise<ArtifactView> {
  const at = ref.lastIndexOf('@');
  if (at > 0) {
    const page = await client.request<{ artifacts: ArtifactView[] }>('GET', '/api/v1/artifacts', undefined, {
      component: ref.slice(0, at),
      version: ref.slice(at + 1),
    });
    const found = page.artifacts[0];
    if (!found) throw new CliError(EXIT.refused, `No artifact ${ref}. See \`gantry artifact list\`.`);
    return found;
  }
  return client.request<ArtifactView>('GET', `/api/v1/artifacts/${encodeURIComponent(ref)}`);
}

/** Signs an artifact's statement with an Ed25519 private key file and attaches the signature. */
async function signArtifact(
  client: ApiClient,
  artifact: ArtifactView,
  keyFile: string,
): Promise<ArtifactView> {
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(await readFile(keyFile));
  } catch (error) {
    throw new CliError(
      EXIT.usage,
      `Cannot read an Ed25519 private key from ${keyFile}: ${(error as Error).message}`,
    );
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new CliError(EXIT.usage, `${keyFile} is not an Ed25519 key.`);
  const statement = signedStatement({
    component: artifact.component,
    version: artifact.version,
    kind: artifact.kind,
    digest: artifact.digest,
  });
  const signature = sign(null, Buffer.from(statement, 'utf8'), privateKey).toString('base64');
  const keyId = keyIdOf(createPublicKey(privateKey));
  return client.request<ArtifactView>('POST', `/api/v1/artifacts/${artifact.id}/signatures`, {
    keyId,
    signature,
  });
}

function showArtifact(a: ArtifactView): string {
  return keyValues([
    ['id', a.id],
    ['component', a.component],
    ['version', a.version],
    ['kind', a.kind],
    ['digest', a.digest],
    ['size', a.size],
    ['file name', a.filename],
    ['state', a.state === 'quarantined' ? `QUARANTINED: ${a.quarantineReason}` : a.state],
    ['uploaded', `${a.createdAt} by ${a.createdBy}`],
    ['last verified', a.verifiedAt],
    ['built by', a.provenance.builder],
    ['source', [a.provenance.sourceRepo, a.provenance.revision].filter(Boolean).join(' @ ') || null],
    ['built at', a.provenance.builtAt],
    [
      'signatures',
      a.signatures.length === 0
        ? 'none'
        : a.signatures
            .map((s) => `${s.keyName ?? s.keyId}: ${s.trusted ? 'trusted' : `NOT trusted (${s.problem})`}`)
            .join('; '),
    ],
  ]);
}

export function addArtifactCommands(program: Command, ctx: CliContext): void {
  const artifact = program
    .command('artifact')
    .description('The media library: push, inspect, pull, sign and verify artifacts');

  artifact
    .command('push')
    .description(
      'Upload a file to the media library (hashed here first, so a byte changed on the way is refused)',
    )
    .argument('<file>', 'a .tar.gz/.tar package, or any file or document')
    .requiredOption('--component <name>', 'component name, e.g. web')
    .requiredOption('--version <version>', 'version, e.g. 2.4.0')
    .option(
      '--kind <kind>',
      `one of ${ARTIFACT_KINDS.join(', ')} (default: package for .tar/.tar.gz, else file)`,
    )
    .option('--sign <keyfile>', 'sign with this Ed25519 private key after upload')
    .option('--builder <id>', 'provenance: what built it (e.g. the CI job URL)')
    .option('--source-repo <url>', 'provenance: source repository')
    .option('--revision <rev>', 'provenance: source revision')
    .option('--built-at <time>', 'provenance: build time')
    .action(async (file: string, o: Record<string, string | undefined>, command: Command) => {
      if (o.kind !== undefined && !(ARTIFACT_KINDS as readonly string[]).includes(o.kind)) {
        throw new CliError(EXIT.usage, `--kind must be one of ${ARTIFACT_KINDS.join(', ')}.`);
      }
      const info = await stat(file).catch(() => null);
      if (!info?.isFile()) throw new CliError(EXIT.usage, `${file} is not a readable file.`);
      const client = ctx.client(command);
      const show = !ctx.json(command) && process.stderr.isTTY === true;
      const hashing = startProgress('hashing  ', info.size, show);
      const hash = createHash('sha256');
      await pipeline(createReadStream(file), hashing.meter(), async (chunks: AsyncIterable<Buffer>) => {
        for await (const chunk of chunks) hash.update(chunk);
      });
      hashing.stop();
      const digest = `sha256:${hash.digest('hex')}`;
      const uploading = startProgress('uploading', info.size, show);
      let result: ArtifactView;
      try {
        result = await client.upload<ArtifactView>(
          '/api/v1/artifacts',
          {
            component: o.component,
            version: o.version,
            kind: o.kind,
            filename: path.basename(file),
            digest,
            builder: o.builder,
            sourceRepo: o.sourceRepo,
            revision: o.revision,
            builtAt: o.builtAt,
          },
          createReadStream(file).pipe(uploading.meter()),
          info.size,
        );
      } finally {
        uploading.stop();
      }
      // Sign only what was sent: a server (or anything between) cannot get a signature over other bytes.
      if (result.digest !== digest || result.component !== o.component || result.version !== o.version) {
        throw new CliError(
          EXIT.failed,
          `The server answered with ${result.component} ${result.version} ${result.digest}, not what was sent (${digest}); nothing was signed.`,
        );
      }
      if (o.sign) result = await signArtifact(client, result, o.sign);
      ctx.out(
        command,
        result,
        () => `Pushed ${result.component} ${result.version} (${result.digest}).\n${showArtifact(result)}`,
      );
    });

  artifact
    .command('list')
    .description('List artifacts')
    .option('--component <name>', 'only this component')
    .option('--state <state>', 'available or quarantined')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: { component?: string; state?: string; limit: string }, command: Command) => {
      const page = await ctx
        .client(command)
        .request<{ artifacts: ArtifactView[] }>('GET', '/api/v1/artifacts', undefined, {
          component: o.component,
          state: o.state,
          limit: o.limit,
        });
      ctx.out(command, page, () =>
        renderTable(
          ['COMPONENT', 'VERSION', 'KIND', 'SIZE', 'STATE', 'SIGNED', 'DIGEST', 'ID'],
          page.artifacts.map((a) => [
            a.component,
            a.version,
            a.kind,
            a.size,
            a.state,
            a.signatures.filter((s) => s.trusted).length > 0 ? 'yes' : 'no',
            `${a.digest.slice(0, 19)}…`,
            a.id,
          ]),
        ),
      );
    });

  artifact
    .command('show')
    .description('Show an artifact: digest, provenance, signatures, integrity state')
    .argument('<artifact>', 'id or COMPONENT@VERSION')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const a = await resolveArtifact(ctx.client(command), ref);
      ctx.out(command, a, () => showArtifact(a));
    });

  artifact
    .command('pull')
    .description('Download an artifact and check its digest before keeping it')
    .argument('<artifact>', 'id or COMPONENT@VERSION')
    .option('-o, --output <file>', 'where to write it (default: its file name in this directory)')
    .option('--force', 'replace the file if it exists')
    .action(async (ref: string, o: { output?: string; force?: boolean }, command: Command) => {
      const client = ctx.client(command);
      const a = await resolveArtifact(client, ref);
      // The uploader chose the file name: keep only a plain, visible base name.
      const offered = path.basename(a.filename ?? '');
      const safeName = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(offered)
        ? offered
        : `${a.component}-${a.version}`;
      const target = o.output ?? safeName;
      if (!o.force && (await stat(target).catch(() => null))) {
        throw new CliError(
          EXIT.usage,
          `${target} exists; pass --force to replace it or -o to write elsewhere.`,
        );
      }
      const temp = `${target}.partial`;
      await rm(temp, { force: true });
      const response = await client.download(`/api/v1/artifacts/${a.id}/content`);
      const progress = startProgress(
        'downloading',
        a.size,
        !ctx.json(command) && process.stderr.isTTY === true,
      );
      const hash = createHash('sha256');
      try {
        if (!response.body) throw new CliError(EXIT.failed, 'The server sent no body.');
        await pipeline(
          Readable.fromWeb(response.body as import('node:stream/web').ReadableStream),
          progress.meter(),
          async function* (chunks: AsyncIterable<Buffer>) {
            for await (const chunk of chunks) {
              hash.update(chunk);
              yield chunk;
            }
          },
          createWriteStream(temp, { mode: 0o644, flags: 'wx' }),
        );
      } catch (error) {
        await rm(temp, { force: true });
        if (error instanceof CliError) throw error;
        throw new CliError(
          EXIT.failed,
          `The download of ${a.component} ${a.version} did not complete (${(error as Error).message}); nothing was kept.`,
        );
      } finally {
        progress.stop();
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== a.digest) {
        await rm(temp, { force: true });
        throw new CliError(
          EXIT.failed,
          `The bytes received hash to ${actual}, not ${a.digest}; nothing was kept.`,
        );
      }
      await rename(temp, target);
      ctx.out(
        command,
        { artifact: a, file: path.resolve(target) },
        () => `Pulled ${a.component} ${a.version} to ${target} (digest verified).\n`,
      );
    });

  artifact
    .command('verify')
    .description('Have the server re-hash the stored bytes now (a mismatch quarantines the artifact)')
    .argument('<artifact>', 'id or COMPONENT@VERSION')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const client = ctx.client(command);
      const a = await resolveArtifact(client, ref);
      const result = await client.request<{ ok: boolean; message: string }>(
        'POST',
        `/api/v1/artifacts/${a.id}/verify`,
      );
      ctx.out(
        command,
        result,
        () => `${a.component} ${a.version}: ${result.ok ? 'OK' : 'FAILED'}: ${result.message}\n`,
      );
      if (!result.ok) throw new CliError(EXIT.failed, 'verification failed', result, true);
    });

  artifact
    .command('sign')
    .description('Sign an artifact here with an Ed25519 private key and attach the signature')
    .argument('<artifact>', 'id or COMPONENT@VERSION')
    .requiredOption('--key <keyfile>', 'Ed25519 private key (PEM), e.g. from `gantry keys generate`')
    .option(
      '--file <file>',
      'the local file the artifact was made from (default: download and hash the artifact first)',
    )
    .action(async (ref: string, o: { key: string; file?: string }, command: Command) => {
      const client = ctx.client(command);
      const a = await resolveArtifact(client, ref);
      // A signature vouches for bytes: hash them here rather than trust the digest the server names.
      let local: string;
      if (o.file !== undefined) {
        local = `sha256:${await sha256File(o.file).catch(() => {
          throw new CliError(EXIT.usage, `Cannot read ${o.file}.`);
        })}`;
      } else {
        const response = await client.download(`/api/v1/artifacts/${a.id}/content`);
        const hash = createHash('sha256');
        for await (const chunk of Readable.fromWeb(response.body as import('node:stream/web').ReadableStream))
          hash.update(chunk as Buffer);
        local = `sha256:${hash.digest('hex')}`;
      }
      if (local !== a.digest)
        throw new CliError(
          EXIT.failed,
          `The bytes hash to ${local}, not the ${a.digest} the server names; nothing was signed.`,
        );
      const signed = await signArtifact(client, a, o.key);
      ctx.out(command, signed, () => showArtifact(signed));
    });

  artifact
    .command('delete')
    .description('Delete an artifact that nothing refers to (admin)')
    .argument('<artifact>', 'id or COMPONENT@VERSION')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const client = ctx.client(command);
      const a = await resolveArtifact(client, ref);
      await client.request('DELETE', `/api/v1/artifacts/${a.id}`);
      ctx.out(command, { deleted: a.id }, () => `Deleted ${a.component} ${a.version}.\n`);
    });

  artifact
    .command('prune')
    .description('Keep the newest N versions of each component; delete older ones nothing refers to (admin)')
    .requiredOption('--keep <n>', 'versions to keep per component')
    .option('--component <name>', 'only this component')
    .option('--dry-run', 'only say what would be deleted')
    .action(async (o: { keep: string; component?: string; dryRun?: boolean }, command: Command) => {
      const keep = Number(o.keep);
      if (!Number.isInteger(keep) || keep < 1)
        throw new CliError(EXIT.usage, '--keep must be a whole number, 1 or more.');
      const result = await ctx
        .client(command)
        .request<{ dryRun: boolean; removed: Array<{ component: string; version: string; id: string }> }>(
          'POST',
          '/api/v1/dml/retention',
          { keep, ...(o.component ? { component: o.component } : {}), dryRun: o.dryRun === true },
        );
      ctx.out(command, result, () =>
        result.removed.length === 0
          ? 'Nothing to delete.\n'
          : `${result.dryRun ? 'Would delete' : 'Deleted'}:\n${renderTable(
              ['COMPONENT', 'VERSION', 'ID'],
              result.removed.map((r) => [r.component, r.version, r.id]),
            )}`,
      );
    });
}
