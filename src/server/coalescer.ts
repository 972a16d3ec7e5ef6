/**
 * Requests of one kind that arrive close together, handled together. The first waits one turn of
 * the event loop (or, under load, until the batch before it is done); then all that arrived
 * meanwhile are handed to `handle` at once, which answers each one. Thousands of agents asking
 * and reporting at the same moment become a few multi-row statements instead of thousands of
 * round trips, each one waiting its turn under the audit-chain lock.
 */
export type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

interface Waiting<I, R> {
  item: I;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

export class Coalescer<I, R> {
  private pending: Array<Waiting<I, R>> = [];
  private running = false;

  constructor(
    /** Answers every item, in order; throwing fails them all. */
    private readonly handle: (items: I[]) => Promise<Array<Outcome<R>>>,
    private readonly max = 256,
  ) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.pending.length > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        const batch = this.pending.splice(0, this.max);
        let outcomes: Array<Outcome<R>>;
        try {
          outcomes = await this.handle(batch.map((w) => w.item));
        } catch (error) {
          for (const w of batch) w.reject(error);
          continue;
        }
        for (const [i, w] of batch.entries()) {
          const outcome = outcomes[i];
          if (!outcome) w.reject(new Error('a batched request was left unanswered'));
          else if (outcome.ok) w.resolve(outcome.value);
          else w.reject(outcome.error);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
