/**
 * Archive safety on the target (rows B11–B16 of the test plan): every hostile archive is refused
 * whole, nothing is written outside staging, and staging is removed.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rawTar } from '../../test/helpers/tar-factory.ts';
import { DEFAULT_LIMITS, extractSafely, UnsafeArchiveError } from './safe-extract.ts';

// Both forms the agent unpacks: a downloaded file, and a download's pieces held in memory.
describe.each(['a file', 'pieces in memory'])('safe extraction from %s', (form) => {
  let root: string;
  let releases: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'gantry-extract-'));
    releases = path.join(root, 'agent', 'releases');
    mkdirSync(releases, { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function archive(bytes: Buffer): string | Buffer[] {
    if (form === 'pieces in memory')
      // Uneven pieces, as a network brings them; the first is one byte (the gzip magic split).
      return [
        bytes.subarray(0, 1),
        ...Array.from({ length: Math.ceil((bytes.length - 1) / 40_000) }, (_, i) =>
          bytes.subarray(1 + i * 40_000, 1 + (i + 1) * 40_000),
        ),
      ];
    const file = path.join(root, 'artifact.tar');
    writeFileSync(file, bytes);
    return file;
  }

  async function refused(bytes: Buffer, limits = DEFAULT_LIMITS): Promise<UnsafeArchiveError> {
    const error = await extractSafely(archive(bytes), releases, limits).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    // Nothing was unpacked anywhere: staging is gone and no file appeared outside it.
    expect(readdirSync(releases)).toEqual([]);
    expect(readdirSync(root).sort()).toEqual(form === 'a file' ? ['agent', 'artifact.tar'] : ['agent']);
    return error as UnsafeArchiveError;
  }

  it('unpacks files and directories of a well-formed package, gzipped or not', async () => {
    for (const gzip of [false, true]) {
      const dir = await extractSafely(
        archive(
          rawTar(
            [
              { name: 'bin/', type: '5', mode: 0o755 },
              { name: 'bin/run', content: '#!/bin/sh\necho hi\n', mode: 0o755 },
              { name: 'gantry.yaml', content: 'start: ./bin/run\n' },
            ],
            { gzip },
          ),
        ),
        releases,
      );
      expect(readFileSync(path.join(dir, 'gantry.yaml'), 'utf8')).toBe('start: ./bin/run\n');
      expect(statSync(path.join(dir, 'bin/run')).mode & 0o777).toBe(0o755);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      rmSync(dir, { recursive: true });
    }
  });

  it.each([
    ['../../x', 'climbs out'],
    ['a/../../x', 'climbs out'],
    ['/etc/x', 'absolute'],
    ['C:\\x', 'backslash'],
    ['C:../x', 'drive letter'],
    ['..\\x', 'backslash'],
  ])('B11: refuses the whole archive for an entry %s', async (name, reason) => {
    const error = await refused(
      rawTar([
        { name: 'ok.txt', content: 'fine' },
        { name, content: 'evil' },
      ]),
    );
    expect(error.message).toContain(reason);
  });

  it('B12: refuses symbolic links, absolute or relative, and a write through them', async () => {
    const error = await refused(
      rawTar([
        { name: 'd', type: '2', linkname: '/etc' },
        { name: 'd/passwd', content: 'root::0:0::/:/bin/sh' },
      ]),
    );
    expect(error.entry).toBe('d');
    await refused(rawTar([{ name: 'up', type: '2', linkname: '../../..' }]));
  });

  it('B13: refuses hard links, also those aimed out of the tree', async () => {
    const error = await refused(
      rawTar([{ name: 'a/b/c/d/x', type: '1', linkname: '../../../../etc/passwd' }]),
    );
    expect(error.reason).toContain('Link');
  });

  it('B14: refuses a case or Unicode collision combined with a link', async () => {
    await refused(
      rawTar([
        { name: 'straße', type: '2', linkname: '/tmp' },
        { name: 'strasse/x', content: 'x' },
        { name: 'caf\u00e9', content: 'nfc' },
        { name: 'cafe\u0301', content: 'nfd' },
      ]),
    );
  });

  it('B15: refuses bombs: too many entries, too deep, too large, too compressible', async () => {
    const limits = {
      ...DEFAULT_LIMITS,
      maxEntries: 50,
      maxEntryBytes: 1024 * 1024,
      maxTotalBytes: 2 * 1024 * 1024,
    };
    await refused(rawTar(Array.from({ length: 60 }, (_, i) => ({ name: `f${i}`, content: 'x' }))), limits);
    await refused(
      rawTar([{ name: `${Array.from({ length: 70 }, () => 'd').join('/')}/x`, content: 'deep' }]),
      limits,
    );
    await refused(rawTar([{ name: 'big', content: Buffer.alloc(2 * 1024 * 1024) }]), limits);
    const zeros = await refused(
      rawTar([{ name: 'zeros', content: Buffer.alloc(1024 * 1024) }], { gzip: true }),
      { ...limits, maxDecompressionRatio: 100 },
    );
    expect(zeros.message).toContain('max decompression ratio exceeded');
    // Compressed twice: each layer within the ratio, the two together far beyond it.
    const twice = await refused(
      gzipSync(rawTar([{ name: 'zeros', content: Buffer.alloc(1024 * 1024) }], { gzip: true })),
      { ...limits, maxDecompressionRatio: 100 },
    );
    expect(twice.message).toContain('compressed twice');
    // The same, crafted so that the outer layer gives the inner one's first byte on its own: a
    // first gzip member, exactly one 1 MiB piece long (a long comment), carries only that byte.
    const inner = rawTar([{ name: 'zeros', content: Buffer.alloc(1024 * 1024) }], { gzip: true });
    const member = (data: Buffer, total?: number) => {
      const deflated = deflateRawSync(data);
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(crc32(data), 0);
      trailer.writeUInt32LE(data.length, 4);
      const comment = total === undefined ? 0 : total - 10 - 1 - deflated.length - 8;
      const header = Buffer.from([0x1f, 0x8b, 8, comment ? 0x10 : 0, 0, 0, 0, 0, 0, 255]);
      const text = comment ? Buffer.concat([Buffer.alloc(comment, 0x61), Buffer.from([0])]) : Buffer.alloc(0);
      return Buffer.concat([header, text, deflated, trailer]);
    };
    const crafted = await refused(
      Buffer.concat([member(inner.subarray(0, 1), 1024 * 1024), member(inner.subarray(1))]),
      { ...limits, maxDecompressionRatio: 100 },
    );
    expect(crafted.message).toContain('compressed twice');
  });

  it('B16: refuses device nodes and FIFOs, and strips set-id, sticky and world-writable bits', async () => {
    for (const type of ['3', '4', '6'] as const) await refused(rawTar([{ name: 'dev', type }]));
    const dir = await extractSafely(
      archive(
        rawTar([
          { name: 'tool', content: 'x', mode: 0o6777 },
          { name: 'data', content: 'y', mode: 0o1666 },
        ]),
      ),
      releases,
    );
    expect(statSync(path.join(dir, 'tool')).mode & 0o7777).toBe(0o755);
    expect(statSync(path.join(dir, 'data')).mode & 0o7777).toBe(0o644);
    expect(statSync(path.join(dir, 'tool')).uid).toBe(process.getuid?.());
  });

  it('refuses something that is not a tar archive at all', async () => {
    const error = await refused(Buffer.from('PK\u0003\u0004 this is a zip, not a tar'));
    expect(error.message).toContain('unsafe archive');
    expect(existsSync(path.join(root, 'agent', 'releases'))).toBe(true);
  });
});
