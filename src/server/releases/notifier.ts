/**
 * Delivers queued notifications (release notes when a release is made available) to subscribed
 * webhooks: a JSON POST, retried with growing pauses when the receiver is down, given up after
 * `MAX_ATTEMPTS` and left visible as failed. The queue is a table, so nothing is lost on restart.
 */
import http from 'node:http';
import https from 'node:https';
import type { Clock } from '../clock.ts';
import type { Database } from '../db/database.ts';

const MAX_ATTEMPTS = 10;
const TIMEOUT_MS = 5000;

export class Notifier {
  constructor(private readonly deps: { database: Database; clock: Clock }) {}

  /** Sends every notification that is due; returns how many were delivered. */
  async deliverDue(limit = 50): Promise<number> {
    const db = this.deps.database.db;
    const now = this.deps.clock.now();
    const due = await db
      .selectFrom('notifications as n')
      .innerJoin('subscriptions as s', 's.id', 'n.subscription_id')
      .select(['n.id', 'n.payload', 'n.attempts', 'n.kind', 's.url'])
      .where('n.state', '=', 'pending')
      .where('n.next_attempt_at', '<=', now.toISOString())
      .where('s.removed_at', 'is', null)
      .orderBy('n.next_attempt_at')
      .limit(limit)
      .execute();
    let delivered = 0;
    for (const n of due) {
      const problem = await post(n.url, n.payload, n.kind, n.id);
      const at = this.deps.clock.now();
      if (problem === null) {
        delivered++;
        await db
          .updateTable('notifications')
          .set({
            state: 'delivered',
            attempts: n.attempts + 1,
            delivered_at: at.toISOString(),
            last_error: null,
          })
          .where('id', '=', n.id)
          .execute();
      } else {
        const attempts = n.attempts + 1;
        const pause = Math.min(3_600_000, 10_000 * 2 ** (attempts - 1));
        await db
          .updateTable('notifications')
          .set({
            state: attempts >= MAX_ATTEMPTS ? 'failed' : 'pending',
            attempts,
            last_error: problem.slice(0, 500),
            next_attempt_at: new Date(at.getTime() + pause).toISOString(),
          })
          .where('id', '=', n.id)
          .execute();
      }
    }
    return delivered;
  }
}

/** POSTs the payload; null on a 2xx answer, otherwise what went wrong. */
function post(url: string, payload: string, kind: string, id: string): Promise<string | null> {
  return new Promise((resolve) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve(`not a URL: ${url}`);
      return;
    }
    const client = target.protocol === 'https:' ? https : http;
    const request = client.request(
      target,
      {
        method: 'POST',
        timeout: TIMEOUT_MS,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          'user-agent': 'gantry-notifier',
          'x-gantry-event': kind,
          'x-gantry-delivery': id,
        },
      },
      (response) => {
        response.resume();
        const status = response.statusCode ?? 0;
        resolve(status >= 200 && status < 300 ? null : `answered ${status}`);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    request.on('error', (error) => resolve(error.message));
    request.end(payload);
  });
}
