/**
 * The Detection contract: what every scanner payload is normalised to. Types only are imported by
 * workflow code; the zod schemas are used by the ingress.
 *
 * A Detection never carries the secret value. It carries a keyed fingerprint of it and the
 * non-secret identifiers a provider needs (credentialRef).
 */
import { z } from 'zod';

export const CREDENTIAL_TYPES = [
  'postgres_password',
  'aws_access_key',
  'redis_password',
  'github_token',
  'slack_token',
  'generic',
  'mysql_password',
] as const;
export type CredentialType = (typeof CREDENTIAL_TYPES)[number];

export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface DetectionLocation {
  repository?: string;
  file?: string;
  line?: number;
  commit?: string;
  url?: string;
}

/** Non-secret identifiers of a credential: a role and host, an access key id, a user name. */
export type CredentialRef = Record<string, string>;

/** What the scanner knows of the credential's validity (a live check it made, or not). */
export type Validity = 'verified' | 'unverified' | 'unknown';

/** Where to report back once the credential is dead (resolve an alert, close an incident). */
export type CloseLoopRef =
  { kind: 'github_alert'; url: string } | { kind: 'gitguardian_incident'; incidentId: number };

export interface Detection {
  /** Dedupe key of this sighting: source + the scanner's finding id, or a hash of credential + location. */
  id: string;
  source: string;
  scanner?: string;
  credentialType: CredentialType;
  credentialRef: CredentialRef;
  /** `hmac-sha256:<hex>` of the secret value under the server's fingerprint key, when a value was sent. */
  fingerprint?: string;
  location: DetectionLocation;
  severity: Severity;
  detectedAt: string;
  /** True when the ingress kept the leaked value, encrypted, outside Temporal, for verify-dead. */
  hasEvidence: boolean;
  validity?: Validity;
  publiclyLeaked?: boolean;
  closeLoop?: CloseLoopRef;
}

const boundedString = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

/** Printable identifier: no control characters, nothing that could smuggle a value into logs. */
const identifier = z
  .string()
  .trim()
  .min(1)
  .max(256)
  .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

const location = z
  .object({
    repository: boundedString(512).optional(),
    file: boundedString(2048).optional(),
    line: z.number().int().min(0).optional(),
    commit: z
      .string()
      .regex(/^[0-9a-fA-F]{7,64}$/, 'must be a hex commit id')
      .optional(),
    url: z.url().max(4096).optional(),
  })
  .strict();

/**
 * The documented generic detection format accepted by POST /webhooks/generic.
 * `secret` is optional: send it when the scanner has the value (the ingress fingerprints it and
 * never forwards it); otherwise `credentialRef` must identify the credential.
 */
export const genericDetectionSchema = z
  .object({
    findingId: identifier.optional(),
    scanner: identifier.optional(),
    credentialType: z.enum(CREDENTIAL_TYPES),
    secret: z
      .string()
      .min(1)
      .max(16 * 1024)
      .optional(),
    credentialRef: z
      .record(
        z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, 'keys are identifiers'),
        z.union([identifier, z.number().int()]),
      )
      .optional(),
    location: location.optional(),
    severity: z.enum(SEVERITIES).default('high'),
    detectedAt: z.iso.datetime({ offset: true }).optional(),
  })
  .strict()
  .refine((d) => d.secret !== undefined || (d.credentialRef && Object.keys(d.credentialRef).length > 0), {
    message: 'either secret or credentialRef is required',
    path: ['credentialRef'],
  });

export type GenericDetectionPayload = z.infer<typeof genericDetectionSchema>;
