/**
 * The ingress as its own process (production split): one Temporal client per process, listens,
 * and on SIGTERM closes the server then the connection. Needs DATABASE_URL (shared with the worker).
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { Express } from 'express';
import * as boot from '../lib/bootstrap';
import { loadConfig, type Config } from '../lib/config';
import { listBreakers, resetBreaker } from '../store/breaker';
import { createPostgresDb, migrate, type Db } from '../lib/db';
import type { EvidenceStore } from '../lib/evidence';
import { createOutboundControl } from './outbound-control';
import { createEvidenceStore } from '../store/evidence';
import { sightingLedger } from '../store/sightings';
import { syncConfigRules } from '../store/rules';
import { checkRoutedSubscriptions, syncConfigSubscriptions } from '../store/subscriptions';
import { routedBy } from '../lib/routing';
import { allowHostsOf, type HostLookup, type OutboundControl } from '../lib/subscriptions';
import type { ServerKeys } from '../contracts/keys';
import { createLogger, type Logger } from '../lib/logger';
import { codecFromConfig, killSwitchDataConverter } from '../lib/codec';
import type { PayloadCodec } from '@temporalio/common';
import { createApp } from './app';
import { createSlackEvents } from './slack';
import { createDeliveryLedger, createSourceSwitches } from './deliveries';
import { buildSources } from './sources/registry';
import { createDispatcher, createWorkflowDispatcher, temporalTarget } from '../lib/dispatch';
import type { Inventory } from '../lib/inventory';
import { sourceDryRun } from '../lib/policy';
import { GLOBAL_SCOPE } from '../lib/dry-run';
import { describeTemporalConnection, explainConnectError } from '../lib/temporal-connection';

export function listen(app: Express, port: number, host: string): Promise<http.Server> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(app);
    server.requestTimeout = 30_000;
    server.headersTimeout = 10_000;
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** The ingress wired from config: used by this process and by npm start's all-in-one. */
export function createIngressApp(
  config: Config,
  parts: {
    logger: Logger;
    client: Client;
    keys: ServerKeys;
    db: Db;
    evidence: EvidenceStore;
    genericSecrets: readonly string[];
    inventory: Inventory;
    env: Record<string, string | undefined>;
    /** The payload codec the client uses; built from config and keys when omitted. */
    codec?: PayloadCodec;
    /** Sends delivery.test (POST /admin/subscriptions/:id/test); 503 when omitted. */
    outbound?: OutboundControl;
    /** Resolves subscription hosts (node:dns when omitted; tests pass their own). */
    lookup?: HostLookup;
  },
): Express {
  const temporal = temporalTarget(config, parts.client);
  const { sources, routers } = buildSources({
    config,
    inventory: parts.inventory,
    keys: parts.keys,
    env: parts.env,
    genericSecrets: parts.genericSecrets,
  });
  return createApp({
    logger: parts.logger,
    keys: parts.keys,
    temporal,
    dispatcher: createDispatcher({
      workflows: createWorkflowDispatcher(temporal),
      evidence: parts.evidence,
      sightings: sightingLedger(parts.db),
    }),
    deliveries: createDeliveryLedger(parts.db),
    switches: createSourceSwitches(parts.db),
    breakers: {
      list: () => listBreakers(parts.db),
      reset: (system, by) => resetBreaker(parts.db, system, by),
    },
    sources,
    routers,
    codec: {
      codec: parts.codec ?? codecFromConfig(config, parts.keys),
      namespace: config.temporal.namespace,
      uiOrigin: config.temporal.uiOrigin,
      tokens: config.codec.tokens,
      ...(config.codec.jwt ? { jwt: config.codec.jwt } : {}),
    },
    // API_TOKENS with roles plus ADMIN_TOKENS as admin tokens (lib/config.ts merges them).
    apiTokens: config.apiTokens,
    db: parts.db,
    subscriptions: {
      allowHosts: allowHostsOf(parts.inventory.outbound.allowHosts, parts.env.OUTBOUND_ALLOW_HOSTS),
      inventoryFile: config.inventoryFile ?? boot.DEFAULT_INVENTORY_FILE,
      routedBy: routedBy(parts.inventory.systems),
      ...(parts.lookup ? { lookup: parts.lookup } : {}),
    },
    ...(parts.outbound ? { outbound: parts.outbound } : {}),
    ...(config.observability.metricsToken ? { metricsToken: config.observability.metricsToken } : {}),
    configuredDryRun: (scope) =>
      scope === GLOBAL_SCOPE ? parts.inventory.policy.dryRun : sourceDryRun(parts.inventory.sources, scope),
    ...(config.slack.token && config.slack.signingSecret
      ? {
          slackEvents: createSlackEvents({
            botToken: config.slack.token,
            signingSecret: config.slack.signingSecret,
            apiUrl: config.slack.apiUrl,
            temporal,
            db: parts.db,
            approvers: parts.inventory.policy.approvers,
            logger: parts.logger,
          }),
        }
      : {}),
  });
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, name: 'kill-switch-api', format: config.logFormat });
  const mode = { embedded: false };
  const keys = boot.serverKeys(config, mode, logger);
  const inventory = boot.inventory(config, logger);
  const secrets = boot.genericWebhookSecrets(config, mode, logger, inventory.sources.generic);
  const db = createPostgresDb(boot.requireSharedDatabase(config, 'API'));
  await migrate(db, logger);
  // The inventory's subscriptions replace the config rows (docs/events.md, Subscriptions).
  const synced = await syncConfigSubscriptions(db, keys, inventory, process.env);
  logger.info(synced, 'config subscriptions synced');
  // Then the rules, whose actions name subscriptions (docs/events.md, Rules).
  logger.info(await syncConfigRules(db, inventory), 'config rules synced');
  await checkRoutedSubscriptions(db, inventory.systems);
  // Lazy: the ingress starts even while Temporal is down and answers 503 until it is back.
  // TEMPORAL_* variables or a profile: address, namespace, TLS/mTLS, API key (lib/temporal-connection.ts).
  const target = config.temporal.connection;
  logger.info({ temporal: describeTemporalConnection(target) }, 'Temporal connection');
  const connection = Connection.lazy(target.connectOptions());
  const codec = codecFromConfig(config, keys);
  const client = new Client({
    connection,
    namespace: config.temporal.namespace,
    dataConverter: killSwitchDataConverter(codec),
  });
  const app = createIngressApp(config, {
    logger,
    client,
    keys,
    db,
    evidence: createEvidenceStore(db, keys, config.evidenceTtlHours),
    genericSecrets: secrets,
    inventory,
    env: process.env,
    codec,
    outbound: createOutboundControl({
      db,
      workflows: createWorkflowDispatcher(temporalTarget(config, client)),
    }),
  });
  const server = await listen(app, config.port, config.host);
  logger.info({ port: config.port }, 'ingress listening');
  // Open the lazy connection now rather than in the first delivery's answer time. Not fatal: while
  // Temporal is down, deliveries get 503 and the connection is made on a later one.
  connection
    .withDeadline(Date.now() + config.temporal.connectTimeoutMs, () =>
      connection.workflowService.getSystemInfo({}),
    )
    .catch((err: unknown) =>
      logger.warn(
        { err: explainConnectError(err, target) },
        'Temporal not reachable yet; deliveries are answered 503 until it is',
      ),
    );
  const stop = () => {
    logger.info('shutting down');
    server.close(() => {
      void connection
        .close()
        .then(() => db.close())
        .finally(() => process.exit(0));
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    process.stderr.write(`ingress failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
