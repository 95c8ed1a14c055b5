/**
 * `knownSecrets:` in the config file: credentials the operator lists by a hash of their current
 * value, so a sender that carries only a hash (GitGuardian's secret_hash / hmsl_hash) can still be
 * matched to the credential it names. Hashes only; never a value.
 */
import { z } from 'zod';
import { CREDENTIAL_TYPES } from '../contracts/detection';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a lower-case hex SHA-256');

export const knownSecretSchema = z
  .object({
    name: z.string().min(1).max(100).optional(),
    credentialType: z.enum(CREDENTIAL_TYPES),
    credentialRef: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/), z.string().min(1).max(256)),
    /** Hashes of the current value, as the senders compute them. */
    hashes: z
      .object({
        /** HasMySecretLeaked hash (what GitGuardian sends as hmsl_hash). */
        hmsl: hex64.optional(),
        /** GitGuardian's secret_hash. */
        gitguardian: z.string().min(16).max(256).optional(),
      })
      .strict()
      .refine((h) => h.hmsl || h.gitguardian, { message: 'at least one hash' }),
  })
  .strict();

export const knownSecretsSchema = z.array(knownSecretSchema).default([]);
export type KnownSecret = z.infer<typeof knownSecretSchema>;
