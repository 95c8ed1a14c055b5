/**
 * Encryption of everything the kill switch puts into Temporal: a PayloadCodec (AES-256-GCM) on every
 * client and worker, plus a failure converter that moves failure messages and stack traces into an
 * (encrypted) payload. Keys carry an id so they can rotate: the first configured key encodes, every
 * configured key decodes, and the id of the key that sealed a payload travels in its metadata.
 * Workflow ids and search attributes are not payloads and stay readable: they hold only
 * non-secret references (keyed fingerprints, credential types, system names).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import path from 'node:path';
import {
  METADATA_ENCODING_KEY,
  ValueError,
  type DataConverter,
  type Payload,
  type PayloadCodec,
} from '@temporalio/common';
import { PROJECT_ROOT } from './paths';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
/** Format of the sealed bytes: version | 12-byte IV | 16-byte tag | ciphertext. */
const SEAL_VERSION = 1;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

export interface CodecKey {
  readonly id: string;
  readonly key: Buffer;
}

/** The file whose `failureConverter` export encodes failure messages and stack traces into a payload. */
export const FAILURE_CONVERTER_PATH = path.join(PROJECT_ROOT, 'lib', 'failure-converter.cjs');

export class CodecError extends ValueError {
  override name = 'CodecError';
}

const utf8 = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

/**
 * Parses KILLSWITCH_CODEC_KEYS ("k2:<base64 32 bytes>,k1:<base64 32 bytes>"); the first key encodes.
 * Throws with a message saying which entry is wrong (never the key material).
 */
export function parseCodecKeys(value: string): CodecKey[] {
  const entries = value
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0)
    throw new Error('expected one or more <id>:<base64 of 32 bytes>, comma-separated');
  const seen = new Set<string>();
  return entries.map((entry, i) => {
    const sep = entry.indexOf(':');
    const id = sep > 0 ? entry.slice(0, sep) : '';
    const b64 = sep > 0 ? entry.slice(sep + 1) : '';
    if (!KEY_ID.test(id))
      throw new Error(
        `entry ${i + 1}: expected <id>:<base64 key> with an id of letters, digits, . _ - (at most 64)`,
      );
    if (seen.has(id)) throw new Error(`entry ${i + 1}: key id ${id} appears twice`);
    seen.add(id);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new Error(`key ${id}: not base64`);
    const key = Buffer.from(b64, 'base64');
    if (key.length !== 32) throw new Error(`key ${id}: must be 32 bytes (AES-256), got ${key.length}`);
    return { id, key };
  });
}

/**
 * AES-256-GCM over the whole inner payload (its metadata and data), so the encoding of the value
 * is hidden too. The key id and the encoding are bound in as associated data: swapping the key id
 * of a sealed payload makes it undecodable instead of decoding under another key.
 */
export class EncryptionCodec implements PayloadCodec {
  private readonly byId: ReadonlyMap<string, Buffer>;
  readonly activeKeyId: string;

  constructor(keys: readonly CodecKey[]) {
    if (keys.length === 0) throw new Error('EncryptionCodec needs at least one key');
    for (const k of keys) {
      if (!KEY_ID.test(k.id)) throw new Error(`invalid codec key id: ${k.id}`);
      if (k.key.length !== 32) throw new Error(`codec key ${k.id} must be 32 bytes`);
    }
    this.byId = new Map(keys.map((k) => [k.id, Buffer.from(k.key)]));
    this.activeKeyId = keys[0]!.id;
  }

  get keyIds(): string[] {
    return [...this.byId.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.byId.get(this.activeKeyId)!;
    return payloads.map((p) => {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(this.activeKeyId));
      const body = Buffer.concat([cipher.update(serialise(p)), cipher.final()]);
      return {
        metadata: {
          [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING),
          [KEY_ID_METADATA]: Buffer.from(this.activeKeyId),
        },
        data: Buffer.concat([Buffer.from([SEAL_VERSION]), iv, cipher.getAuthTag(), body]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      // Payloads written before encryption was switched on (or by another codec) pass through.
      if (utf8(p.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return p;
      const keyId = utf8(p.metadata?.[KEY_ID_METADATA]);
      if (!keyId) throw new CodecError(`encrypted payload without ${KEY_ID_METADATA} metadata`);
      const key = this.byId.get(keyId);
      if (!key)
        throw new CodecError(
          `payload encrypted with key id "${keyId}", which is not configured (configured: ${this.keyIds.join(', ')}); add it to KILLSWITCH_CODEC_KEYS`,
        );
      const sealed = Buffer.from(p.data ?? new Uint8Array());
      if (sealed.length < 29 || sealed[0] !== SEAL_VERSION)
        throw new CodecError(`encrypted payload (key id "${keyId}") has an unknown format`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 13));
        decipher.setAAD(aad(keyId));
        decipher.setAuthTag(sealed.subarray(13, 29));
        return deserialise(Buffer.concat([decipher.update(sealed.subarray(29)), decipher.final()]));
      } catch (err) {
        if (err instanceof CodecError) throw err;
        throw new CodecError(
          `encrypted payload (key id "${keyId}") failed authentication: wrong key or tampered data`,
        );
      }
    });
  }
}

function aad(keyId: string): Buffer {
  return Buffer.from(`${ENCRYPTED_ENCODING}\n${keyId}`, 'utf8');
}

/** The inner payload as JSON (metadata values and data base64): self-describing and dependency-free. */
function serialise(p: Payload): Buffer {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {}))
    if (v) metadata[k] = Buffer.from(v).toString('base64');
  return Buffer.from(
    JSON.stringify({ m: metadata, d: p.data ? Buffer.from(p.data).toString('base64') : undefined }),
    'utf8',
  );
}

function deserialise(b: Buffer): Payload {
  const o = JSON.parse(b.toString('utf8')) as { m?: Record<string, string>; d?: string };
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(o.m ?? {})) metadata[k] = Buffer.from(v, 'base64');
  return o.d === undefined ? { metadata } : { metadata, data: Buffer.from(o.d, 'base64') };
}

/** The converter files of killSwitchDataConverter: what the workflow bundle embeds (scripts/build.ts builds it with them). */
export const CONVERTER_PATHS = Object.freeze({ failureConverterPath: FAILURE_CONVERTER_PATH });

/**
 * The data converter every client and worker of the kill switch uses. Its converter paths are also
 * what a prebuilt workflow bundle must be built with (bundleWorkflowCode({ failureConverterPath })).
 */
export function killSwitchDataConverter(codec: PayloadCodec): DataConverter {
  return { payloadCodecs: [codec], ...CONVERTER_PATHS };
}

/** The keys in force: KILLSWITCH_CODEC_KEYS when configured, else the one derived from the server key. */
export function createCodec(
  configured: readonly CodecKey[] | undefined,
  derived: () => CodecKey,
): EncryptionCodec {
  return new EncryptionCodec(configured && configured.length > 0 ? configured : [derived()]);
}

/** The codec of a process: from its config (KILLSWITCH_CODEC_KEYS) or else its server key. */
export function codecFromConfig(
  config: { codec: { keys: readonly CodecKey[] | undefined } },
  keys: { codecKey(): CodecKey },
): EncryptionCodec {
  return createCodec(config.codec.keys, () => keys.codecKey());
}

function isPayload(v: unknown): v is Payload {
  if (!v || typeof v !== 'object') return false;
  const o = v as { metadata?: unknown; data?: unknown };
  return (
    !!o.metadata &&
    typeof o.metadata === 'object' &&
    !(o.metadata instanceof Uint8Array) &&
    Object.values(o.metadata).every((x) => x instanceof Uint8Array) &&
    (o.data === undefined || o.data === null || o.data instanceof Uint8Array) &&
    Object.keys(o).every((k) => k === 'metadata' || k === 'data' || k === 'externalPayloads')
  );
}

/**
 * Decodes every payload found anywhere in a structure (a fetched history, a describe answer) with
 * the codec, in place on a deep copy: what the Temporal UI shows through the codec endpoint. Used
 * to search decoded histories for secrets and by tools that print histories.
 */
export async function decodeDeep<T>(value: T, codec: PayloadCodec): Promise<T> {
  const walk = async (v: unknown): Promise<unknown> => {
    if (v === null || v === undefined || typeof v !== 'object') return v;
    if (v instanceof Uint8Array) return v;
    if (isPayload(v)) return (await codec.decode([v]))[0];
    if (Array.isArray(v)) return Promise.all(v.map(walk));
    // Same prototype (protobuf messages, Long ids keep their methods), own fields walked.
    const out = Object.create(Object.getPrototypeOf(v) as object | null) as Record<string, unknown>;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = await walk(x);
    return out;
  };
  return (await walk(value)) as T;
}

/** Every payload in a structure with where it sits (`events[3].activityTaskScheduledEventAttributes.input.payloads[0]`). */
export function collectPayloads(value: unknown): Array<{ path: string; payload: Payload }> {
  const found: Array<{ path: string; payload: Payload }> = [];
  const walk = (v: unknown, at: string) => {
    if (v === null || v === undefined || typeof v !== 'object' || v instanceof Uint8Array) return;
    if (isPayload(v)) {
      found.push({ path: at, payload: v });
      return;
    }
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`));
    else for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, at ? `${at}.${k}` : k);
  };
  walk(value, '');
  return found;
}
