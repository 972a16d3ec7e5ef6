/**
 * Pure rules of the media library: what a valid component name and version look like, how
 * versions order, what the bytes of each artifact kind must begin with, the statement a publisher
 * signs, and which artifacts a retention rule would remove.
 */
import { canonicalJson } from './canonical-json.ts';

export const ARTIFACT_KINDS = ['package', 'file', 'document'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

/** Letters, digits, dot, dash, underscore; no path characters, no leading dot. */
export const COMPONENT_PATTERN = '^[a-z0-9][a-z0-9._-]{0,99}$';
export const VERSION_PATTERN = '^[A-Za-z0-9][A-Za-z0-9.+_-]{0,99}$';
export const DIGEST_PATTERN = '^sha256:[0-9a-f]{64}$';

export function isValidComponentName(name: string): boolean {
  return new RegExp(COMPONENT_PATTERN).test(name) && !name.includes('..');
}

export function isValidVersion(version: string): boolean {
  return new RegExp(VERSION_PATTERN).test(version) && !version.includes('..');
}

const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/**
 * Orders versions: semver by its rules (a pre-release sorts before its release) when both are
 * semver, otherwise by text. Returns <0, 0 or >0.
 */
export function compareVersions(a: string, b: string): number {
  const ma = SEMVER.exec(a);
  const mb = SEMVER.exec(b);
  if (!ma || !mb) return a < b ? -1 : a > b ? 1 : 0;
  for (let i = 1; i <= 3; i++) {
    const d = Number(ma[i]) - Number(mb[i]);
    if (d !== 0) return d;
  }
  const pa = ma[4];
  const pb = mb[4];
  if (pa === undefined && pb === undefined) return 0;
  if (pa === undefined) return 1;
  if (pb === undefined) return -1;
  const xa = pa.split('.');
  const xb = pb.split('.');
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const sa = xa[i];
    const sb = xb[i];
    if (sa === undefined) return -1;
    if (sb === undefined) return 1;
    const na = /^\d+$/.test(sa);
    const nb = /^\d+$/.test(sb);
    if (na && nb && Number(sa) !== Number(sb)) return Number(sa) - Number(sb);
    if (na !== nb) return na ? -1 : 1;
    if (sa !== sb) return sa < sb ? -1 : 1;
  }
  return 0;
}

export type ContentType = 'gzip' | 'tar' | 'zip' | 'elf' | 'other';

/** What the first bytes of a blob say it is (at least 512 bytes are needed to see a tar header). */
export function sniffContent(head: Uint8Array): ContentType {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x50 && head[1] === 0x4b && (head[2] === 0x03 || head[2] === 0x05)) return 'zip';
  if (head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) return 'elf';
  // POSIX tar: "ustar" at offset 257.
  if (head.length >= 262 && [0x75, 0x73, 0x74, 0x61, 0x72].every((c, i) => head[257 + i] === c)) return 'tar';
  return 'other';
}

/**
 * Whether `content` may be stored as `kind` under `filename`. A package must be a tar or a
 * gzip-compressed tar (zip is refused in this version); a file name that promises a format must
 * match what the bytes are. Returns the reason for a refusal, or null.
 */
export function contentProblem(
  kind: ArtifactKind,
  content: ContentType,
  filename: string | undefined,
): string | null {
  const name = (filename ?? '').toLowerCase();
  if (kind === 'package') {
    if (content !== 'gzip' && content !== 'tar') {
      return `a package must be a .tar or .tar.gz archive, but these bytes look like ${describe(content)}`;
    }
    if ((name.endsWith('.tar.gz') || name.endsWith('.tgz')) && content !== 'gzip')
      return `'${filename}' is named as gzip but is ${describe(content)}`;
    if (name.endsWith('.tar') && content !== 'tar')
      return `'${filename}' is named as tar but is ${describe(content)}`;
    return null;
  }
  if ((name.endsWith('.tar.gz') || name.endsWith('.tgz') || name.endsWith('.gz')) && content !== 'gzip') {
    return `'${filename}' is named as gzip but is ${describe(content)}`;
  }
  if (name.endsWith('.zip') && content !== 'zip')
    return `'${filename}' is named as zip but is ${describe(content)}`;
  return null;
}

function describe(content: ContentType): string {
  switch (content) {
    case 'gzip':
      return 'gzip data';
    case 'tar':
      return 'a tar archive';
    case 'zip':
      return 'a zip archive';
    case 'elf':
      return 'an ELF executable';
    case 'other':
      return 'something else';
  }
}

export interface SignedStatementFields {
  component: string;
  version: string;
  kind: ArtifactKind;
  /** `sha256:<hex>` */
  digest: string;
}

/**
 * The exact bytes a publisher signs for an artifact: its name, version, kind and digest in
 * canonical JSON, so a signature cannot be moved to another artifact.
 */
export function signedStatement(fields: SignedStatementFields): string {
  return canonicalJson({
    type: 'gantry.artifact.v1',
    component: fields.component,
    version: fields.version,
    kind: fields.kind,
    digest: fields.digest,
  });
}

export interface RetentionCandidate {
  id: string;
  component: string;
  version: string;
  createdAt: string;
  /** Names of what refers to it; a referenced artifact is never removed. */
  referencedBy: readonly string[];
}

/** The artifacts a "keep the newest N per component" rule removes: never a referenced one. */
export function selectForRetention(
  artifacts: readonly RetentionCandidate[],
  keep: number,
): RetentionCandidate[] {
  const byComponent = new Map<string, RetentionCandidate[]>();
  for (const a of artifacts) byComponent.set(a.component, [...(byComponent.get(a.component) ?? []), a]);
  const doomed: RetentionCandidate[] = [];
  for (const list of byComponent.values()) {
    const newestFirst = [...list].sort(
      (x, y) => compareVersions(y.version, x.version) || (y.createdAt < x.createdAt ? -1 : 1),
    );
    for (const a of newestFirst.slice(keep)) if (a.referencedBy.length === 0) doomed.push(a);
  }
  return doomed;
}
