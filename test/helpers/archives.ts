/** Small real archives for tests: a gzip-compressed tar made with the system's tar. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function makeTarGz(files: Record<string, string | Buffer>): Buffer {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-tar-'));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
    execFileSync('tar', ['-czf', path.join(dir, 'out.tar.gz'), '-C', dir, ...Object.keys(files)]);
    return readFileSync(path.join(dir, 'out.tar.gz'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The first bytes of a zip archive and of an ELF executable: enough to be recognised. */
export const ZIP_BYTES = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(600, 1)]);
export const ELF_BYTES = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(600, 2)]);
