/**
 * GitHub's secret scanning partner format: batches signed with ECDSA P-256 by a key from a
 * published key list (a loopback fake here), verified, contained end to end, answered 204.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PartnerKeyCache } from '../../api/sources/github-partner';
import { killSwitchWorkflowId, type KillSwitchResult } from '../../contracts/run';
import { startRecorder, type RecordingServer } from '../fakes/http-recorder';
import { rand, startHarness, type Harness } from '../helpers/harness';

const pair = () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, pem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
};
const current = pair();
const rotated = pair();
const keys = [{ key_identifier: `id-${rand()}`, key: current.pem, is_current: true }];
let keyServer: RecordingServer;
let h: Harness;

beforeAll(async () => {
  keyServer = await startRecorder(() => ({ status: 200, body: { public_keys: keys } }));
  h = await startHarness({
    config: {
      sources: {
        github_partner: {
          keysUrl: `${keyServer.url}/meta/public_keys/secret_scanning`,
          keysCacheSeconds: 3600,
        },
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
  await keyServer?.close();
});

async function deliver(
  batch: unknown,
  key: { id: string; privateKey: ReturnType<typeof pair>['privateKey'] },
  tamper = false,
) {
  const body = JSON.stringify(batch);
  const signature = sign('sha256', Buffer.from(body), { key: key.privateKey, dsaEncoding: 'der' }).toString(
    'base64',
  );
  const res = await fetch(`${h.baseUrl}/webhooks/github_partner`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'github-public-key-identifier': key.id,
      'github-public-key-signature': signature,
    },
    body: tamper ? body.replace('"type"', '"type" ') : body,
  });
  return { status: res.status, text: await res.text() };
}

describe('GitHub partner format', () => {
  it('verifies the batch, answers 204 and contains the token', async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const token = `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`;
    const res = await deliver(
      [
        {
          token,
          type: 'acme_internal_db_url',
          url: 'https://github.com/someone/repo/blob/abc/config.yml',
          source: 'content',
        },
      ],
      { id: keys[0]!.key_identifier, privateKey: current.privateKey },
    );
    expect(res.status).toBe(204);
    const result: KillSwitchResult = await h.client.workflow
      .getHandle(killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password)))
      .result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
  });

  it('refuses a tampered body, an unknown key id and a non-array batch', async () => {
    const k = { id: keys[0]!.key_identifier, privateKey: current.privateKey };
    expect((await deliver([{ token: 't1', type: 'x' }], k, true)).status).toBe(401);
    expect(
      (await deliver([{ token: 't1', type: 'x' }], { id: 'nope', privateKey: current.privateKey })).status,
    ).toBe(401);
    expect((await deliver({ token: 't1' }, k)).status).toBe(422);
  });

  it('refetches the key list for an unknown id, but not more than the minimum interval allows', async () => {
    const list = [{ key_identifier: 'k1', key: current.pem }];
    let fetches = 0;
    const fetchImpl = (async () => {
      fetches++;
      return new Response(JSON.stringify({ public_keys: list }), {
        status: 200,
        headers: { 'content-type': 'application/json' },
      });
    }) as typeof fetch;
    const eager = new PartnerKeyCache('http://keys.invalid', 3_600_000, undefined, fetchImpl, 0);
    expect(await eager.get('k1')).toBe(current.pem);
    list.push({ key_identifier: 'k2', key: rotated.pem });
    expect(await eager.get('k2')).toBe(rotated.pem);
    expect(fetches).toBe(2);

    fetches = 0;
    const guarded = new PartnerKeyCache('http://keys.invalid', 3_600_000, undefined, fetchImpl, 60_000);
    await guarded.get('k1');
    for (let i = 0; i < 50; i++) expect(await guarded.get(`attacker-${i}`)).toBeUndefined();
    expect(fetches).toBe(1);
  });
});
