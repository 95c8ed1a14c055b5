/**
 * The connect_redis session target against real sessions: an Express app on loopback using
 * express-session with connect-redis (and its node-redis client) on the real Redis writes them;
 * the target, built through the registry's createSessionTarget, ends exactly the named users' ones.
 */
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionTarget } from '../../activities/sessions';
import { sessionTargetSchema } from '../../lib/systems';
import { ErrorType } from '../../contracts/errors';
import { redisFixtures, redisUrl, type RedisFixtures } from '../helpers/redis';
import { startSessionApp, type SessionApp } from '../helpers/session-app';

const rand = () => randomBytes(4).toString('hex');

let fx: RedisFixtures;
const apps: SessionApp[] = [];

beforeAll(async () => {
  fx = await redisFixtures();
});
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await fx?.cleanup();
});

const target = (over: Record<string, unknown>, url = redisUrl()) =>
  createSessionTarget(
    sessionTargetSchema.parse({ kind: 'connect_redis', urlEnv: 'SESSIONS_REDIS_URL', ...over }),
    { SESSIONS_REDIS_URL: url },
  );

async function app(prefix: string) {
  const a = await startSessionApp(prefix);
  apps.push(a);
  fx.trackPattern(`${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`);
  return a;
}

describe('connect_redis session target', () => {
  it('ends every session of the named users and no other (dry run only counts); a second run finds none', async () => {
    const prefix = `sess-${rand()}:`;
    const a = await app(prefix);
    const [alice1, alice2, bob] = [await a.login('alice'), await a.login('alice'), await a.login('bob')];
    const numeric = await a.login('42');
    expect(await a.whoami(alice1)).toBe('alice');
    // Things under the prefix this target cannot read are never deleted.
    await fx.su.set(`${prefix}garbage`, 'not json');
    // A session-shaped value outside the prefix is not this app's.
    const elsewhere = `other-${rand()}:x`;
    await fx.su.set(elsewhere, JSON.stringify({ userId: 'alice' }));
    fx.trackKey(elsewhere);

    const t = target({ prefix, users: ['alice', '42'] });
    expect(await t.expire({ dryRun: true })).toEqual({ expired: 0, wouldExpire: 3 });
    expect(await a.whoami(alice2)).toBe('alice');

    expect(await t.expire({})).toEqual({ expired: 3 });
    expect(await a.whoami(alice1)).toBeNull();
    expect(await a.whoami(alice2)).toBeNull();
    expect(await a.whoami(numeric)).toBeNull();
    expect(await a.whoami(bob)).toBe('bob');
    expect(await fx.su.get(`${prefix}garbage`)).toBe('not json');
    expect(await fx.su.exists(elsewhere)).toBe(1);

    expect(await t.expire({})).toEqual({ expired: 0 });
    await t.close();
  });

  it('follows a dotted userField and matches the prefix literally, even with glob characters in it', async () => {
    const tag = rand();
    const prefix = `app[${tag}]*:`;
    // `app[<tag>]*:*` as a glob would also match this neighbour's keys.
    const neighbourPrefix = `app${tag[0]}zz:`;
    const a = await app(prefix);
    const n = await app(neighbourPrefix);
    const mine = await a.login('carol');
    const theirs = await n.login('carol');

    const t = target({ prefix, userField: 'passport.user', users: ['carol'] });
    expect(await t.expire({})).toEqual({ expired: 1 });
    expect(await a.whoami(mine)).toBeNull();
    expect(await n.whoami(theirs)).toBe('carol');
    // A userField that is absent matches nothing.
    expect(
      await target({ prefix: neighbourPrefix, userField: 'passport.id', users: ['carol'] }).expire({}),
    ).toEqual({ expired: 0 });
    expect(await n.whoami(theirs)).toBe('carol');
  });

  it('works with a store user holding only the documented permissions', async () => {
    const prefix = `sess-${rand()}:`;
    const a = await app(prefix);
    const dave = await a.login('dave');
    const { user, password } = await fx.createUser({ rules: [`~${prefix}*`, '+scan', '+mget', '+del'] });
    expect(await target({ prefix, users: ['dave'] }, redisUrl(user, password)).expire({})).toEqual({
      expired: 1,
    });
    expect(await a.whoami(dave)).toBeNull();
  });

  it('classifies a store user without SCAN as PermissionDenied, an unreachable store as transient', async () => {
    const { user, password } = await fx.createUser({ rules: ['~*', '+get', '+del'] });
    const denied = target({ users: ['x'] }, redisUrl(user, password));
    const refused = await denied.expire({}).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ApplicationFailure);
    expect(refused).toMatchObject({ type: ErrorType.PERMISSION_DENIED, nonRetryable: true });
    const down = target({ users: ['x'] }, 'redis://127.0.0.1:1');
    const err = await down.expire({}).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ApplicationFailure);
  });
});
