/**
 * Startup pieces shared by the entry points (npm start, worker, api): key material, webhook
 * secrets and the inventory, each validated with an error that names what is wrong.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, type ApiToken, type Config } from './config';
import { DEMO_SYSTEM, demoSystemEntry } from './demo-service';
import { parseInventory, loadInventoryFile, type Inventory } from './inventory';
import { createServerKeys, loadOrCreateLocalSecret, newServerKey, newWebhookSecret } from './keys';
import { type ServerKeys } from '../contracts/keys';
import type { Logger } from './logger';
import { DEFAULT_GENERIC_SECRETS_ENV } from './sources-config';
import { LOCAL_API_TOKEN_FILE } from './webhook-client';

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

/** The inventory file to load: INVENTORY_FILE, else config/inventory.yaml when it exists; none on embedded defaults. */
export function inventoryFile(config: Config): string | undefined {
  return config.inventoryFile ?? (existsSync(DEFAULT_INVENTORY_FILE) ? DEFAULT_INVENTORY_FILE : undefined);
}

/**
 * `demo`: npm start on embedded defaults runs the demo service (lib/demo-service.ts); without an
 * inventory file the embedded inventory then holds its one system.
 */
export function inventory(config: Config, logger: Logger, demo?: { url: string }): Inventory {
  const file = inventoryFile(config);
  if (!file && demo) {
    logger.info(
      { system: DEMO_SYSTEM, url: demo.url },
      'no inventory file: the embedded inventory holds the demo system only (npm run send-test-detection)',
    );
    return parseInventory({ systems: [demoSystemEntry(demo.url)] }, 'the embedded demo inventory');
  }
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

/**
 * npm start's local API token: an admin token of the read and admin API for this process only, kept
 * (0600) in the data folder, where the CLI finds it when KILLSWITCH_API_TOKEN is unset.
 */
export function localApiToken(config: Config): ApiToken {
  const token = loadOrCreateLocalSecret(config.dataDir, LOCAL_API_TOKEN_FILE, () =>
    randomBytes(32).toString('base64url'),
  );
  return Object.freeze({ role: 'admin' as const, token, label: `local ${LOCAL_API_TOKEN_FILE}` });
}

/** What the startup banner shows; every link as the operator opens it. */
export interface BannerFacts {
  ingress: string;
  /** The one-time login link of the local UI gateway (opens the UI with payloads decoded), if there is one. */
  uiLogin?: string;
  ui: string;
  dataDir: string;
  /** Local secret files kept in the data folder (names only). */
  secretFiles: readonly string[];
  demo?: { system: string; url: string };
  inventory: string;
}

/** The compact block `npm start` prints once when ready: where things are and what to run next. */
export function readyBanner(f: BannerFacts): string {
  const rows: Array<[string, string]> = [
    ['ingress', `${f.ingress}/webhooks/generic`],
    [
      'Temporal UI',
      f.uiLogin
        ? `${f.uiLogin}\n${' '.repeat(16)}(one-time login link: opens ${f.ui} with payloads decoded)`
        : f.ui,
    ],
    ['inventory', f.inventory],
    ['local secrets', `${path.resolve(f.dataDir)}/ (${f.secretFiles.join(', ')}; mode 0600, never logged)`],
  ];
  if (f.demo) rows.push(['demo system', `${f.demo.system} at ${f.demo.url} (API keys, sessions, admin API)`]);
  rows.push([
    'next',
    f.demo
      ? `npm run send-test-detection   (leaks a demo key; watch the run contain it)`
      : `npm run send-test-detection -- --secret '<a leaked value>'`,
  ]);
  rows.push([
    '',
    `npm run killswitch -- recent   (the CLI reads ${LOCAL_API_TOKEN_FILE} from the data folder)`,
  ]);
  const body = rows.map(([k, v]) => `  ${k.padEnd(14)}${v}`).join('\n');
  return `\nSecret Kill Switch is ready\n${body}\n\n`;
}
