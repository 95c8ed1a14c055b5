/**
 * A source as the registry (api/sources/registry.ts) lists it. Adding a scanner is one file in
 * api/sources/ that exports a SourceDefinition, plus one line in the registry's list.
 */
import type { Router } from 'express';
import type { z } from 'zod';
import type { EnvRequirement } from '../../lib/sources-config';
import type { KnownSecret } from '../../lib/known-secrets';
import type { RegisteredSource } from '../app';
import type { AcceptFn, SourceContext, SourceHandler } from './types';

/** Where a source's definition builds its handler: the request context plus what the ingress resolved at boot. */
export interface SourceBuildContext extends SourceContext {
  /** The ingress's body limit (WEBHOOK_BODY_LIMIT): a source's own unless its section sets bodyLimit. */
  defaultBodyLimit: number;
  /** The inventory's knownSecrets: a sender that carries only a hash (GitGuardian) is matched against them. */
  knownSecrets: readonly KnownSecret[];
  /**
   * Generic secrets resolved at boot (GENERIC_WEBHOOK_SECRETS, or the embedded default's generated
   * file). Used only while `sources.generic.secretsEnv` is that default; another name is read from env.
   */
  genericSecrets: readonly string[];
}

/** A source with routes of its own (GitLab's token revocation API), mounted at /<name>. */
export interface RegisteredRouter {
  name: string;
  enabled: boolean;
  perMinute: number;
  build: (accept: AcceptFn) => Router;
}

/** What a section builds: handlers at POST /webhooks/<name>, or a router of its own. */
export interface BuiltSources {
  sources?: RegisteredSource[];
  routers?: RegisteredRouter[];
}

/**
 * A source, as the registry (api/sources/registry.ts) lists it: adding a scanner is one file that
 * exports one of these, plus one line in the registry's list. The `sources:` schema, the names
 * policy rules may use, the reserved names and the startup environment checks all derive from it.
 */
export interface SourceDefinition<C = unknown> {
  /** The key under `sources:` in the inventory file, and (unless `list`) the route and the source detections carry. */
  readonly name: string;
  /**
   * Validates `sources.<name>` with its defaults (errors name the field under `sources.<name>`). A
   * section the file may leave out ends in `.optional()`, or `.default(…)` when it is always on.
   */
  readonly schema: z.ZodType<C>;
  /** A list of senders that name themselves (`sources.custom`): the key names no source. */
  readonly list?: boolean;
  /** The names detections of this section carry, for a `list` section (policy rules may name them). */
  names?(config: C): string[];
  /** The environment variables the section names, checked before the ingress takes a request. */
  env(config: C, path: string): EnvRequirement[];
  build(config: C, ctx: SourceBuildContext): BuiltSources;
}

/** Types a definition by its schema; the registry holds them erased (each config comes from its own schema). */
export function defineSource<S extends z.ZodType>(
  def: SourceDefinition<z.output<S>> & { schema: S },
): SourceDefinition {
  return def as unknown as SourceDefinition;
}

/** The usual registration: the section's switch and rate limit around one handler. */
export function registered(
  handler: SourceHandler,
  config: { enabled: boolean; rateLimit: { perMinute: number } },
  contentTypes?: string[],
): RegisteredSource {
  return {
    handler,
    enabled: config.enabled,
    perMinute: config.rateLimit.perMinute,
    ...(contentTypes ? { contentTypes } : {}),
  };
}
