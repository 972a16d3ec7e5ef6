/**
 * Failpoints (test plan H1): named places in durable work where a test can make the process die,
 * throw, pause, or fail as a full or broken disk would, deterministically. Configured by the
 * FAILPOINTS setting, e.g. `dml.after_blob_write=kill;dml.before_rename=enospc`. Unset, every
 * `hit` is a no-op.
 */
import { GantryError } from '../core/errors.ts';

export type FailpointAction =
  | { kind: 'kill' }
  | { kind: 'throw' }
  | { kind: 'sleep'; ms: number }
  | { kind: 'enospc' }
  | { kind: 'eio' };

export class Failpoints {
  private readonly actions: ReadonlyMap<string, FailpointAction>;

  constructor(spec: string | undefined) {
    this.actions = parseFailpoints(spec);
  }

  async hit(name: string): Promise<void> {
    const action = this.actions.get(name);
    if (!action) return;
    switch (action.kind) {
      case 'kill':
        process.kill(process.pid, 'SIGKILL');
        // SIGKILL is not delivered synchronously; nothing after this point may run.
        await new Promise(() => {});
        return;
      case 'throw':
        throw new Error(`failpoint ${name}`);
      case 'sleep':
        await new Promise((resolve) => setTimeout(resolve, action.ms));
        return;
      case 'enospc':
        throw Object.assign(new Error(`ENOSPC: no space left on device (failpoint ${name})`), {
          code: 'ENOSPC',
        });
      case 'eio':
        throw Object.assign(new Error(`EIO: i/o error (failpoint ${name})`), { code: 'EIO' });
    }
  }
}

export const NO_FAILPOINTS = new Failpoints(undefined);

export function parseFailpoints(spec: string | undefined): Map<string, FailpointAction> {
  const actions = new Map<string, FailpointAction>();
  for (const part of (spec ?? '')
    .split(';')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, action] = part.split('=').map((x) => x.trim());
    let parsed: FailpointAction | undefined;
    if (action === 'kill' || action === 'throw' || action === 'enospc' || action === 'eio')
      parsed = { kind: action };
    else if (action?.startsWith('sleep:') && /^\d+$/.test(action.slice(6)))
      parsed = { kind: 'sleep', ms: Number(action.slice(6)) };
    if (!name || !parsed) {
      throw new GantryError(
        'CONFIG_INVALID',
        `FAILPOINTS: '${part}' is not name=kill|throw|sleep:<ms>|enospc|eio.`,
        { setting: 'FAILPOINTS' },
      );
    }
    actions.set(name, parsed);
  }
  return actions;
}
