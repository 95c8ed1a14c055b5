/**
 * Fixtures on the real Redis (127.0.0.1:6379): ACL users with random names, an admin user holding
 * exactly the permissions docs/systems/redis.md lists, clients authenticated as a user. Everything
 * created here is deleted by `cleanup()`.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_HOST = '127.0.0.1';
export const REDIS_PORT = 6379;
export const redisUrl = (user?: string, password?: string) =>
  user
    ? `redis://${encodeURIComponent(user)}:${encodeURIComponent(password ?? '')}@${REDIS_HOST}:${REDIS_PORT}`
    : `redis://${REDIS_HOST}:${REDIS_PORT}`;

/** The admin permissions the docs ask for (docs/systems/redis.md). */
export const ADMIN_RULES = [
  'on',
  '+acl|getuser',
  '+acl|setuser',
  '+acl|whoami',
  '+acl|dryrun',
  '+acl|save',
  '+client|kill',
  '+client|list',
  '+client|setname',
  '+config|get',
  '+config|rewrite',
  '+info',
  '+get',
  '+set',
  '+multi',
  '+exec',
  '~killswitch:*',
];

const rand = () => randomBytes(4).toString('hex');

export interface RedisFixtures {
  /** Superuser connection (the server's `default` user) for fixtures and assertions. */
  su: Redis;
  createUser(opts?: {
    prefix?: string;
    passwords?: number;
    rules?: string[];
  }): Promise<{ user: string; password: string; passwords: string[] }>;
  /** An admin user with ADMIN_RULES (or `rules`); returns its URL. */
  createAdmin(rules?: string[]): Promise<{ user: string; password: string; url: string }>;
  /** null when AUTH succeeds, else the error's first word (WRONGPASS, …). */
  authFails(user: string, password: string): Promise<string | null>;
  connectAs(user: string, password: string): Promise<Redis>;
  passwordsOf(user: string): Promise<string[]>;
  flagsOf(user: string): Promise<string[]>;
  /** Deleted by cleanup(): a key, or every key matching a SCAN pattern. */
  trackKey(key: string): void;
  trackPattern(pattern: string): void;
  cleanup(): Promise<void>;
}

export async function redisFixtures(): Promise<RedisFixtures> {
  const su = new Redis(REDIS_PORT, REDIS_HOST, { lazyConnect: true });
  await su.connect();
  const users: string[] = [];
  const keys: string[] = [];
  const patterns: string[] = [];
  const clients: Redis[] = [];
  const getUser = async (user: string) => {
    const reply = (await su.call('ACL', ['GETUSER', user])) as unknown[] | null;
    const m = new Map<string, unknown>();
    for (let i = 0; reply && i < reply.length; i += 2) m.set(String(reply[i]), reply[i + 1]);
    return m;
  };
  return {
    su,
    async createUser(opts = {}) {
      const user = `${opts.prefix ?? 'app'}_${rand()}`;
      // Characters that need care in URLs and protocol framing.
      const passwords = Array.from(
        { length: opts.passwords ?? 1 },
        () => `leak:${randomBytes(12).toString('base64url')}@/ %"`,
      );
      await su.call('ACL', [
        'SETUSER',
        user,
        'on',
        ...passwords.map((p) => `>${p}`),
        ...(opts.rules ?? ['~app:*', '+@read', '+ping']),
      ]);
      users.push(user);
      return { user, password: passwords[0]!, passwords };
    },
    async createAdmin(rules = ADMIN_RULES) {
      const user = `ks_radmin_${rand()}`;
      const password = `admin-${randomBytes(12).toString('hex')}`;
      await su.call('ACL', ['SETUSER', user, `>${password}`, ...rules]);
      users.push(user);
      return { user, password, url: redisUrl(user, password) };
    },
    async authFails(user, password) {
      const c = new Redis(REDIS_PORT, REDIS_HOST, {
        lazyConnect: true,
        enableReadyCheck: false,
        retryStrategy: () => null,
      });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.call('AUTH', [user, password]);
        return null;
      } catch (err) {
        return (err as Error).message.split(' ')[0]!;
      } finally {
        c.disconnect();
      }
    },
    async connectAs(user, password) {
      const c = new Redis({
        host: REDIS_HOST,
        port: REDIS_PORT,
        username: user,
        password,
        lazyConnect: true,
        enableReadyCheck: false,
        retryStrategy: () => null,
      });
      c.on('error', () => undefined);
      await c.connect();
      await c.ping();
      clients.push(c);
      return c;
    },
    async passwordsOf(user) {
      return ((await getUser(user)).get('passwords') as string[]).map(String).sort();
    },
    async flagsOf(user) {
      return ((await getUser(user)).get('flags') as string[]).map(String).sort();
    },
    trackKey(key) {
      keys.push(key);
    },
    trackPattern(pattern) {
      patterns.push(pattern);
    },
    async cleanup() {
      for (const c of clients) c.disconnect();
      if (users.length) await su.call('ACL', ['DELUSER', ...users]);
      for (const p of patterns) keys.push(...(await su.keys(p)));
      if (keys.length) await su.del(...keys);
      su.disconnect();
    },
  };
}
