import { describe, expect, it } from 'vitest';
import { normaliseGeneric, validateGeneric } from '../../api/sources/generic';
import { type HttpProblem } from '../../contracts/errors';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { killSwitchWorkflowId } from '../../contracts/run';

const keys = createServerKeys(newServerKey());
const now = new Date('2026-11-23T10:00:00Z');
const norm = (body: unknown, k = keys) => normaliseGeneric(validateGeneric(body), k, now);

describe('generic detection normalisation', () => {
  it('reduces a leaked connection string to a keyed fingerprint and identifiers', () => {
    const n = norm({
      credentialType: 'postgres_password',
      secret: 'postgres://app_user:S3cr3t%21@db.internal:5433/payments',
    });
    expect(n.leakedValue).toBe('S3cr3t!');
    expect(n.detection.credentialRef).toEqual({
      role: 'app_user',
      host: 'db.internal',
      port: '5433',
      database: 'payments',
    });
    expect(n.detection.fingerprint).toBe(keys.fingerprint('S3cr3t!'));
    expect(n.detection.hasEvidence).toBe(true);
    expect(JSON.stringify(n.detection)).not.toContain('S3cr3t');
    expect(n.detection.detectedAt).toBe(now.toISOString());
  });

  it('derives the workflow id from the credential, not the delivery', () => {
    const a = norm({
      credentialType: 'postgres_password',
      secret: 'postgres://app_user:pw-1@db.internal/app',
      findingId: 'f1',
      scanner: 's1',
    });
    const b = norm({
      credentialType: 'postgres_password',
      secret: 'pw-1',
      credentialRef: { role: 'app_user' },
      findingId: 'f2',
      scanner: 's2',
    });
    expect(a.detection.id).not.toBe(b.detection.id);
    expect(killSwitchWorkflowId('postgres_password', a.credentialKey)).toBe(
      killSwitchWorkflowId('postgres_password', b.credentialKey),
    );
    const c = norm({
      credentialType: 'postgres_password',
      secret: 'pw-2',
      credentialRef: { role: 'app_user' },
    });
    expect(c.credentialKey).not.toBe(a.credentialKey);
  });

  it('keys fingerprints: another server key gives another fingerprint', () => {
    const other = createServerKeys(newServerKey());
    expect(norm({ credentialType: 'generic', secret: 'x-1' }).detection.fingerprint).not.toBe(
      norm({ credentialType: 'generic', secret: 'x-1' }, other).detection.fingerprint,
    );
  });

  it('hashes the reference when no value was sent, independent of key order', () => {
    const a = norm({ credentialType: 'postgres_password', credentialRef: { role: 'r', host: 'h' } });
    const b = norm({ credentialType: 'postgres_password', credentialRef: { host: 'h', role: 'r' } });
    expect(a.credentialKey).toBe(b.credentialKey);
    expect(a.detection.hasEvidence).toBe(false);
    expect(a.leakedValue).toBeUndefined();
  });

  it('scrubs the secret from every field that travels', () => {
    const n = norm({
      credentialType: 'postgres_password',
      secret: 'postgres://app_user:hunter2-secret@db/app',
      location: { url: 'https://ci.example/logs?dsn=hunter2-secret', file: 'env/hunter2-secret.txt' },
    });
    expect(JSON.stringify(n.detection)).not.toContain('hunter2-secret');
    expect(n.detection.location.file).toBe('env/[redacted].txt');
  });

  it('refuses contradictions and gaps with the field named', () => {
    const problem = (body: unknown) => {
      try {
        norm(body);
      } catch (err) {
        return err as HttpProblem;
      }
      throw new Error('expected a problem');
    };
    expect(
      problem({
        credentialType: 'postgres_password',
        secret: 'postgres://a:b@h/d',
        credentialRef: { role: 'other' },
      }).extras.errors?.[0]?.field,
    ).toBe('credentialRef.role');
    expect(
      problem({ credentialType: 'postgres_password', secret: 'just-a-password' }).extras.errors?.[0]?.field,
    ).toBe('credentialRef.role');
    expect(problem({ credentialType: 'postgres_password', credentialRef: { role: 'a\u0000b' } }).status).toBe(
      422,
    );
  });
});
