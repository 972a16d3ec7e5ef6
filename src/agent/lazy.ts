/**
 * The YAML and tar readers, loaded when a step first needs them: an idle agent stays small without
 * them (a static import anywhere in the agent would load them at start).
 */
export const readManifest = async (dir: string) => (await import('./manifest.ts')).readManifest(dir);

export const extractSafely = async (archive: string | Buffer[], parent: string) =>
  (await import('./safe-extract.ts')).extractSafely(archive, parent);
