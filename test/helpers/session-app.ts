/** An Express app on loopback whose sessions live in the real Redis, stored by express-session + connect-redis (node-redis client). */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RedisStore } from 'connect-redis';
import express from 'express';
import session from 'express-session';
import { createClient } from 'redis';
import { redisUrl } from './redis';

const rand = () => randomBytes(4).toString('hex');

export interface SessionApp {
  url: string;
  /** Logs `user` in and returns the session cookie. */
  login(user: string): Promise<string>;
  /** Who the app thinks the cookie belongs to (null: no session). */
  whoami(cookie: string): Promise<string | null>;
  close(): Promise<void>;
}

/** An Express app storing its sessions with connect-redis under `prefix`; the user goes to `userId` and `passport.user`. */
export async function startSessionApp(prefix: string): Promise<SessionApp> {
  const client = createClient({ url: redisUrl() });
  client.on('error', () => undefined);
  await client.connect();
  const app = express();
  app.use(
    session({
      store: new RedisStore({ client, prefix }),
      secret: `s-${rand()}`,
      resave: false,
      saveUninitialized: false,
      name: 'sid',
    }),
  );
  app.post('/login/:user', (req, res) => {
    const s = req.session as unknown as { userId?: string; passport?: { user: string } };
    s.userId = req.params.user;
    s.passport = { user: req.params.user };
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as { userId?: string }).userId ?? null });
  });
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    async login(user) {
      const res = await fetch(`${url}/login/${encodeURIComponent(user)}`, { method: 'POST' });
      if (res.status !== 200) throw new Error(`login failed: ${res.status}`);
      const cookie = res.headers.get('set-cookie');
      if (!cookie?.startsWith('sid=')) throw new Error('no session cookie');
      return cookie.split(';')[0]!;
    },
    async whoami(cookie) {
      const res = await fetch(`${url}/me`, { headers: { cookie } });
      return ((await res.json()) as { user: string | null }).user;
    },
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await client.quit();
    },
  };
}
