/**
 * An Express app's sessions in Redis, as connect-redis stores them: one string key `<prefix><sid>`
 * holding the session as JSON. Expiry = SCAN the prefix, parse each session, DEL the ones whose
 * `userField` names one of the target's users. Idempotent: a second run finds none.
 */
import { Redis } from 'ioredis';
import type { SessionTargetConfig } from '../../lib/systems';
import { classifyRedisError } from '../../lib/systems/redis';
import type { SessionTarget } from '../../lib/systems/provider';

type ConnectRedisConfig = Extract<SessionTargetConfig, { kind: 'connect_redis' }>;

const SCAN_COUNT = 500;

/** SCAN MATCH is a glob: the prefix is matched literally. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/** The value at a dotted path (`passport.user`), or undefined. */
export function atPath(value: unknown, path: string): unknown {
  let cur: unknown = value;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, part))
      return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export class ConnectRedisSessions implements SessionTarget {
  readonly kind = 'connect_redis';
  private readonly users: ReadonlySet<string>;

  constructor(
    private readonly config: ConnectRedisConfig,
    private readonly url: string,
  ) {
    this.users = new Set(config.users);
  }

  private belongs(raw: string | null): boolean {
    if (raw === null) return false;
    let sess: unknown;
    try {
      sess = JSON.parse(raw);
    } catch {
      return false; // not a session this target understands; never delete what it cannot read
    }
    const v = atPath(sess, this.config.userField);
    return (typeof v === 'string' || typeof v === 'number') && this.users.has(String(v));
  }

  async expire(opts: { dryRun?: boolean }): Promise<{ expired: number; wouldExpire?: number }> {
    const r = new Redis(this.url, {
      lazyConnect: true,
      connectTimeout: 5_000,
      commandTimeout: 30_000,
      enableReadyCheck: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    let lastError: unknown;
    r.on('error', (err) => (lastError = err));
    const context = `expire connect_redis sessions (prefix ${this.config.prefix})`;
    try {
      try {
        await r.connect();
      } catch (err) {
        throw classifyRedisError(lastError ?? err, context);
      }
      let matched = 0;
      let expired = 0;
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(
          cursor,
          'MATCH',
          `${globEscape(this.config.prefix)}*`,
          'COUNT',
          SCAN_COUNT,
        );
        cursor = next;
        if (keys.length === 0) continue;
        const values = await r.mget(...keys);
        const doomed = keys.filter((_k, i) => this.belongs(values[i] ?? null));
        matched += doomed.length;
        // DEL counts only the keys it removed: a session that expired meanwhile is not counted twice.
        if (!opts.dryRun && doomed.length) expired += await r.del(...doomed);
      } while (cursor !== '0');
      return opts.dryRun ? { expired: 0, wouldExpire: matched } : { expired };
    } catch (err) {
      throw classifyRedisError(err, context);
    } finally {
      r.disconnect();
    }
  }

  async close(): Promise<void> {}
}
