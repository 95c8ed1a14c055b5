/**
 * Startup pieces shared by the entry points (npm start, worker, api): key material, webhook
 * secrets and the inventory, each validated with an error that names what is wrong.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, type Config } from './config';
import { parseInventory, loadInventoryFile, type Inventory } from './inventory';
import { createServerKeys, loadOrCreateLocalSecret, newServerKey, newWebhookSecret } from './keys';
import { type ServerKeys } from '../contracts/keys';
import type { Logger } from './logger';
import { DEFAULT_GENERIC_SECRETS_ENV } from './sources-config';

export const DEFAULT_INVENTORY_FILE = 'config/inventory.yaml';

/** `embedded`: npm start on defaults may generate and keep local secrets; split processes may not. */
export interface BootMode {
  embedded: boolean;
}

export function serverKeys(config: Config, mode: BootMode, logger: Logger): ServerKeys {
  if (config.serverKey) return createServerKeys(config.serverKey);
  if (!mode.embedded)
    throw new ConfigError(
      'invalid environment:\n  KILLSWITCH_SERVER_KEY: required (base64 of 32 random bytes; e.g. openssl rand -base64 32)',
    );
  const key = loadOrCreateLocalSecret(config.dataDir, 'server.key', newServerKey);
  logger.info(
    { file: path.join(config.dataDir, 'server.key') },
    'KILLSWITCH_SERVER_KEY unset: using the local key in the data folder',
  );
  return createServerKeys(key);
}

/**
 * `generic` is the inventory's `sources.generic`: when its secretsEnv names another variable, the
 * source registry reads and checks that one, and GENERIC_WEBHOOK_SECRETS is not needed.
 */
export function genericWebhookSecrets(
  config: Config,
  mode: BootMode,
  logger: Logger,
  generic?: { secretsEnv: string },
): readonly string[] {
  if (generic && generic.secretsEnv !== DEFAULT_GENERIC_SECRETS_ENV) return [];
  if (config.webhook.genericSecrets) return config.webhook.genericSecrets;
  if (!mode.embedded)
    throw new ConfigError(
      'invalid environment:\n  GENERIC_WEBHOOK_SECRETS: required (one or more whsec_<base64> secrets, comma-separated)',
    );
  const file = path.join(config.dataDir, 'generic-webhook-secret');
  const secret = loadOrCreateLocalSecret(config.dataDir, 'generic-webhook-secret', newWebhookSecret);
  logger.info(
    { file },
    'GENERIC_WEBHOOK_SECRETS unset: the generic webhook accepts the secret kept in this file',
  );
  return [secret];
}

export function inventory(config: Config, logger: Logger): Inventory {
  const file =
    config.inventoryFile ?? (existsSync(DEFAULT_INVENTORY_FILE) ? DEFAULT_INVENTORY_FILE : undefined);
  if (!file) {
    logger.warn(
      'no inventory file (INVENTORY_FILE or config/inventory.yaml): every detection will be escalated to a human',
    );
    return parseInventory({ systems: [] });
  }
  const inv = loadInventoryFile(file);
  logger.info({ file, systems: inv.systems.map((s) => `${s.name} (${s.kind})`) }, 'inventory loaded');
  return inv;
}

export function requireSharedDatabase(config: Config, role: string): string {
  if (!config.databaseUrl) {
    throw new ConfigError(
      `invalid environment:\n  DATABASE_URL: required when the ${role} runs as its own process (the embedded PGlite store serves one process; use npm start for the all-in-one default)`,
    );
  }
  return config.databaseUrl;
}
