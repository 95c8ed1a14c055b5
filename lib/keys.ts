/**
 * Key material derived from the one server key (KILLSWITCH_SERVER_KEY): a fingerprint key for
 * keyed hashes of secret values and references, and an evidence key that encrypts leaked values
 * held for verify-dead. Separate HKDF labels so one derived key never doubles as the other.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ServerKeys } from '../contracts/keys';

const EVIDENCE_VERSION = 1;

export function createServerKeys(serverKeyBase64: string): ServerKeys {
  const master = Buffer.from(serverKeyBase64, 'base64');
  if (master.length < 32) throw new Error('KILLSWITCH_SERVER_KEY must be at least 32 bytes of base64');
  const derive = (label: string) => Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), label, 32));
  const fpKey = derive('secret-kill-switch/fingerprint/v1');
  const evKey = derive('secret-kill-switch/evidence/v1');
  const codecKey = derive('secret-kill-switch/payload-codec/v1');
  const codecKeyId = `sk-${createHmac('sha256', codecKey).update('key-id').digest('hex').slice(0, 12)}`;

  const fingerprint = (value: string) =>
    `hmac-sha256:${createHmac('sha256', fpKey).update(value, 'utf8').digest('hex')}`;

  return {
    fingerprint,
    refHash(parts) {
      const h = createHmac('sha256', fpKey);
      for (const p of parts) h.update(`${p.length}:${p};`);
      return h.digest('hex');
    },
    encrypt(plaintext, associatedData) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', evKey, iv);
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return Buffer.concat([Buffer.from([EVIDENCE_VERSION]), iv, cipher.getAuthTag(), body]);
    },
    decrypt(sealed, associatedData) {
      if (sealed[0] !== EVIDENCE_VERSION) throw new Error('unknown evidence format');
      const iv = sealed.subarray(1, 13);
      const tag = sealed.subarray(13, 29);
      const decipher = createDecipheriv('aes-256-gcm', evKey, iv);
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(sealed.subarray(29)), decipher.final()]).toString('utf8');
    },
    codecKey() {
      return { id: codecKeyId, key: Buffer.from(codecKey) };
    },
    fingerprintMatches(value, fp) {
      const a = Buffer.from(fingerprint(value));
      const b = Buffer.from(fp);
      return a.length === b.length && timingSafeEqual(a, b);
    },
  };
}

/**
 * The embedded default: when no server key is configured, one is generated on first start and
 * kept (mode 0600) in the data folder, so fingerprints and workflow ids stay stable across restarts.
 */
export function loadOrCreateLocalSecret(dataDir: string, fileName: string, make: () => string): string {
  const file = path.resolve(dataDir, fileName);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(path.dirname(file), { recursive: true });
  const value = make();
  writeFileSync(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return value;
}

export const newServerKey = () => randomBytes(32).toString('base64');
export const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;
