/** What the rest of the code may do with the server key's derived material (lib/keys.ts implements it). */
export interface ServerKeys {
  /** `hmac-sha256:<hex>` of a secret value. */
  fingerprint(value: string): string;
  /** Keyed hash of a non-secret identity (used for workflow ids when no value was sent). */
  refHash(parts: readonly string[]): string;
  encrypt(plaintext: string, associatedData: string): Buffer;
  decrypt(sealed: Buffer, associatedData: string): string;
  fingerprintMatches(value: string, fingerprint: string): boolean;
  /** The Temporal payload key used when KILLSWITCH_CODEC_KEYS is unset; its id is derived from it. */
  codecKey(): { id: string; key: Buffer };
}
