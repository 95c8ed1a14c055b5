/**
 * What a kind of owning system is: one definition per kind, in one file of this folder, registered
 * by one line in ./kinds.ts. The definition is the only place the kind is described: its inventory
 * schema, what it can do (the inventory refuses a mode it cannot honour, the workflow reads whether a
 * replacement can be issued), which detections it owns, the env vars it needs, and its provider.
 *
 * Providers are created once per system when the worker starts and must not connect or load a heavy
 * SDK then: whatever only the provider needs is imported on first use (see lazyProvider), so the
 * ingress, which parses the same inventory, never loads it.
 */
import type { z } from 'zod';
import type { CredentialRef, CredentialType } from '../../contracts/detection';
import type { EnvRequirement } from './common';
import type { CredentialProvider } from './provider';

export interface KindSupports {
  /** Both values valid at once: the replacement first, the leaked value killed after the overlap. */
  graceful: boolean;
  /** `revoke({ quarantine: true })` is a reversible quarantine. */
  quarantine: boolean;
  /** The provider can issue a replacement (a token that can only be revoked cannot). */
  replacement: boolean;
}

/** The process environment, checked by resolveInventoryEnv before any provider is created. */
export type Env = Readonly<Record<string, string | undefined>>;

/** A kind's inventory schema: a strict object whose `kind` is a literal, the common fields spread in. */
export type KindSchema = z.ZodObject<{ kind: z.ZodLiteral<string> } & z.core.$ZodLooseShape, z.core.$strict>;

export interface SystemKindDef<Schema extends KindSchema, S = z.output<Schema>> {
  schema: Schema;
  /** What the kind's provider can do; per system when a function. */
  supports: KindSupports | ((s: S) => KindSupports);
  /** The detections' credential types this kind can own; per system when a function. */
  credentialTypes: readonly CredentialType[] | ((s: S) => readonly CredentialType[]);
  /** Pure: whether this system owns the credential a detection names. */
  owns(s: S, ref: CredentialRef, type: CredentialType): boolean;
  /** The env vars the system needs, each with its config path (`at` is the system's path). */
  env(s: S, at: string): EnvRequirement[];
  /** What a detection must name for this kind, for the "no owner" reason. */
  describe(ref: CredentialRef): string;
  /** The system's provider; `env` has been checked against `env()`. Connects on first use only. */
  createProvider(s: S, env: Env): CredentialProvider;
}

/** Types the definition against its schema (the system type is the schema's output). */
export function defineKind<Schema extends KindSchema>(def: SystemKindDef<Schema>): SystemKindDef<Schema> {
  return def;
}

/** A kind's definition with `supports` and `credentialTypes` resolved for one system. */
export interface ResolvedKind<S> extends Omit<
  SystemKindDef<KindSchema, S>,
  'supports' | 'credentialTypes' | 'schema'
> {
  kind: string;
  supports: KindSupports;
  credentialTypes: readonly CredentialType[];
}

/**
 * A provider whose module (and its SDK or driver) is imported on its first call; the worker creates
 * every system's provider at startup, most processes never call most of them.
 */
export function lazyProvider(kind: string, load: () => Promise<CredentialProvider>): CredentialProvider {
  let loaded: Promise<CredentialProvider> | undefined;
  const provider = () => (loaded ??= load());
  return {
    kind,
    revoke: async (req) => (await provider()).revoke(req),
    issueReplacement: async (req, sink) => (await provider()).issueReplacement(req, sink),
    expireSessions: async (req) => (await provider()).expireSessions(req),
    verifyDead: async (req, leaked) => (await provider()).verifyDead(req, leaked),
    close: async () => {
      if (loaded) await (await loaded).close();
    },
  };
}
