/** What `gantry` exits with; `gantry --help` prints this table. */
export const EXIT = {
  ok: 0,
  /** The command ran and failed (a broken audit chain, a server error), or an unexpected fault. */
  failed: 1,
  /** Wrong flags or arguments, or nothing to talk to yet (run `gantry login`). */
  usage: 2,
  /** The server refused: not signed in, not allowed, not found, conflict, invalid input, rate limited. */
  refused: 3,
  /** The server could not be reached or is unavailable (connection refused, timeout, 503). */
  unreachable: 4,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  the command failed (for example a broken audit chain) or an unexpected error
  2  usage error: wrong flags or arguments, or no server configured (run \`gantry login\`)
  3  refused by the server: not signed in, not allowed, not found, conflict, invalid input
  4  server unreachable or unavailable

Environment:
  GANTRY_URL     server URL (overrides \`gantry login\`'s)
  GANTRY_TOKEN   API token (overrides \`gantry login\`'s)
  GANTRY_CONFIG_DIR  where \`gantry login\` keeps its file (default: $XDG_CONFIG_HOME/gantry or ~/.config/gantry)
`;

export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    /** The server's error body, when there was one: printed as is with --json. */
    readonly body?: unknown,
    /** The command already printed its outcome; only the exit code is left to give. */
    readonly reported = false,
  ) {
    super(message);
  }
}
