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
    /** Answers every item, in order; when it throws, each item is handled again alone. */
    private readonly handle: (items: I[]) => Promise<Array<Outcome<R>>>,
    private readonly max = 256,
  ) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private settle(batch: Array<Waiting<I, R>>, outcomes: Array<Outcome<R>>): void {
    for (const [i, w] of batch.entries()) {
      const outcome = outcomes[i];
      if (!outcome) w.reject(new Error('a batched request was left unanswered'));
      else if (outcome.ok) w.resolve(outcome.value);
      else w.reject(outcome.error);
    }
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.pending.length > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        const batch = this.pending.splice(0, this.max);
        try {
          this.settle(batch, await this.handle(batch.map((w) => w.item)));
        } catch (error) {
          if (batch.length === 1) {
            (batch[0] as Waiting<I, R>).reject(error);
            continue;
          }
          // One bad request must not fail the others, batch after batch as it is retried: each
          // is handled alone, and only the one at fault fails. They go at once (the unit of work
          // groups them again, each in a savepoint of its own), so a database that is away fails
          // them all in the time of one attempt, not of one per request.
          await Promise.all(
            batch.map(async (w) => {
              try {
                this.settle([w], await this.handle([w.item]));
              } catch (alone) {
                w.reject(alone);
              }
            }),
          );
        }
      }
    } finally {
      this.running = false;
    }
  }
}
