/**
 * `npm start`: the whole kill switch in one process on embedded defaults. Starts a Temporal dev
 * server (unless TEMPORAL_ADDRESS is set) with its UI behind the local UI gateway, opens the audit
 * store (PGlite unless DATABASE_URL is set), runs the worker and the ingress. Ctrl-C drains the
 * worker and stops everything it started.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Connection, Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import * as boot from '../lib/bootstrap';
import { ConfigError, loadConfig, type Config } from '../lib/config';
import { migrate, openDb } from '../lib/db';
import { resolveInventoryEnv } from '../lib/inventory';
import { startSweeper } from '../store/sweeper';
import { startOutboundSweep } from '../activities/outbound';
import { deliveryRetentionMs } from '../lib/subscriptions';
import { createWorkflowDispatcher, temporalTarget } from '../lib/dispatch';
import { createLogger } from '../lib/logger';
import { codecFromConfig, killSwitchDataConverter } from '../lib/codec';
import { installTemporalLogging } from '../lib/temporal-logging';
import { freeLoopbackPort, startWorkerHealthServer } from '../lib/health';
import {
  describeTemporalConnection,
  explainConnectError,
  type TemporalConnectOptions,
} from '../lib/temporal-connection';
import { resolveTemporalCli } from '../tools/temporal-cli';
import { ensureSearchAttributes, freePort, startDevServer, type DevServer } from '../tools/temporal-dev';
import { loadOrCreateLocalSecret } from '../lib/keys';
import {
  DEMO_ADMIN_TOKEN_ENV,
  DEMO_ADMIN_TOKEN_FILE,
  DEMO_SYSTEM,
  newDemoAdminToken,
  publishDemoEndpoint,
  startDemoService,
} from '../lib/demo-service';
import { LOCAL_API_TOKEN_FILE } from '../lib/webhook-client';
import { createIngressApp, listen } from '../api/server';
import { createOutboundControl } from '../api/outbound-control';
import { syncConfigRules } from '../store/rules';
import { checkRoutedSubscriptions, syncConfigSubscriptions } from '../store/subscriptions';
import { createLocalUiGateway, type LocalUiGateway } from '../api/local-ui';
import { buildActivityDeps, createKillSwitchWorker } from '../worker/build';

/**
 * The one origin of the local UI: where the gateway answers, what the browser is sent to, and the
 * origin the codec endpoint serves. It must be a bare origin the UI can live at the root of.
 */
function localUiOrigin(config: Config): string {
  const ui = new URL(config.temporal.uiUrl);
  if (ui.pathname !== '/' || ui.search || ui.hash) {
    throw new ConfigError(
      `invalid environment:\n  TEMPORAL_UI_URL: npm start serves the dev server's UI at the root of an origin (default http://127.0.0.1:${config.temporal.devUiPort}); remove the path`,
    );
  }
  if (config.temporal.uiOrigin !== ui.origin) {
    throw new ConfigError(
      "invalid environment:\n  TEMPORAL_UI_ORIGIN: npm start serves the codec on the UI's own origin (that of TEMPORAL_UI_URL); unset it or make the two equal",
    );
  }
  return ui.origin;
}

async function main(): Promise<void> {
  const loaded = loadConfig(process.env);
  // A local codec token, kept like the server key: a bearer of /codec (the CLI), and what logs a
  // browser into the local UI gateway. Added to CODEC_TOKENS for this process only.
  const codecToken = loadOrCreateLocalSecret(loaded.dataDir, 'codec-token', () =>
    randomBytes(32).toString('base64url'),
  );
  // A local API token (admin), kept like the codec token: what the CLI reads when
  // KILLSWITCH_API_TOKEN is unset. Added to API_TOKENS for this process only.
  const apiToken = boot.localApiToken(loaded);
  const config: Config = Object.freeze({
    ...loaded,
    apiTokens: Object.freeze([...loaded.apiTokens, apiToken]),
    codec: Object.freeze({
      ...loaded.codec,
      tokens: Object.freeze([...(loaded.codec.tokens ?? []), codecToken]),
    }),
  });
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  // Health and metrics (docs/observability.md): the SDK's worker metrics join this process's /metrics
  // (the ingress port with METRICS_TOKEN, the health port with WORKER_HEALTH_PORT).
  const obs = config.observability;
  const metricsServed = obs.workerHealthPort !== undefined || obs.metricsToken !== undefined;
  installTemporalLogging(logger, metricsServed ? { sdkMetricsPort: await freeLoopbackPort() } : {});
  const mode = { embedded: true };
  const keys = boot.serverKeys(config, mode, logger);
  // The demo owning system (lib/demo-service.ts), on embedded defaults only: no inventory file.
  const demo = boot.inventoryFile(config)
    ? undefined
    : await startDemoService({
        adminToken: loadOrCreateLocalSecret(config.dataDir, DEMO_ADMIN_TOKEN_FILE, newDemoAdminToken),
        logger,
      });
  const inventory = boot.inventory(config, logger, demo);
  // The demo's admin token reaches its recipes ({{env.…}}) in this process only.
  const env = demo ? Object.freeze({ ...process.env, [DEMO_ADMIN_TOKEN_ENV]: demo.adminToken }) : process.env;
  const secrets = boot.genericWebhookSecrets(config, mode, logger, inventory.sources.generic);
  resolveInventoryEnv(inventory, env); // fail before starting anything
  const codec = codecFromConfig(config, keys);
  const dataConverter = killSwitchDataConverter(codec);
  if (!config.codec.keys)
    logger.info(
      { keyId: codec.activeKeyId },
      'KILLSWITCH_CODEC_KEYS unset: Temporal payloads are encrypted with a key derived from the server key',
    );

  const cleanups: Array<() => Promise<unknown>> = [];
  if (demo) {
    const unpublish = publishDemoEndpoint(config.dataDir, demo.url);
    cleanups.push(async () => {
      unpublish();
      await demo.close();
    });
  }
  const cleanup = async () => {
    for (const fn of cleanups.reverse())
      await fn().catch((err) => logger.error({ err }, 'shutdown step failed'));
  };

  try {
    let address = config.temporal.address;
    let dev: DevServer | undefined;
    let gateway: LocalUiGateway | undefined;
    if (!address) {
      const cli = resolveTemporalCli({ log: (m) => logger.info(m) });
      const uiOrigin = localUiOrigin(config);
      // The dev server's own UI listens on an internal loopback port; the gateway takes the UI port
      // (loopback only) and serves the codec on the UI's origin, where the browser's cookie goes.
      const upstream = { host: '127.0.0.1', port: await freePort('127.0.0.1') };
      gateway = createLocalUiGateway({
        origin: uiOrigin,
        upstream,
        token: codecToken,
        codec: {
          codec,
          namespace: config.temporal.namespace,
          tokens: config.codec.tokens,
          ...(config.codec.jwt ? { jwt: config.codec.jwt } : {}),
        },
        logger,
      });
      await gateway.listen(config.temporal.devUiPort, '127.0.0.1').catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EADDRINUSE') throw err;
        throw new Error(
          `the Temporal UI port 127.0.0.1:${config.temporal.devUiPort} (TEMPORAL_DEV_UI_PORT) is in use: is another npm start or temporal server start-dev running?`,
        );
      });
      cleanups.push(() => gateway!.close());
      dev = await startDevServer({
        cli,
        ip: '127.0.0.1',
        port: config.temporal.devPort,
        uiPort: upstream.port,
        dbFile: path.resolve(config.dataDir, 'temporal.db'),
        // Measured by `npm run bench`: WAL with synchronous=normal contains a burst ~46 % faster than
        // SQLite's defaults (rollback journal, synchronous=full). It survives a crash of the process;
        // only an OS crash or power loss can drop the last commits of this local store.
        sqlitePragmas: { journal_mode: 'wal', synchronous: 'normal' },
        logFile: path.resolve(config.dataDir, 'temporal.log'),
        namespace: config.temporal.namespace,
        // Same origin as the UI: the browser sends the gateway's session cookie along. No secret here:
        // the UI publishes this URL at /api/v1/settings.
        uiCodecEndpoint: `${uiOrigin}/codec`,
      });
      cleanups.push(() => dev!.stop());
      address = dev.address;
      logger.info({ address, ui: config.temporal.uiUrl }, 'Temporal dev server started');
    }

    // An external Temporal (TEMPORAL_ADDRESS or a profile) with its TLS, mTLS or API key; the dev
    // server started above is plain gRPC on loopback.
    const target = config.temporal.connection;
    const connectOptions: TemporalConnectOptions = dev ? { address } : target.connectOptions();
    if (!dev) logger.info({ temporal: describeTemporalConnection(target) }, 'connecting to Temporal');
    const connection = await Connection.connect(connectOptions).catch((err: unknown) => {
      throw dev ? err : explainConnectError(err, target);
    });
    cleanups.push(() => connection.close());
    if (!dev) {
      const sa = await ensureSearchAttributes(connection, config.temporal.namespace);
      if (sa.error)
        logger.warn(
          { error: sa.error },
          'could not check search attributes; register them as docs/operating.md describes (Running in production)',
        );
      else if (sa.added.length) logger.info({ added: sa.added }, 'search attributes registered');
    }
    const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter });

    const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    cleanups.push(() => db.close());
    const applied = await migrate(db, logger);
    logger.info({ store: db.kind, applied }, 'audit store ready');
    await syncConfigSubscriptions(db, keys, inventory, env);
    // Then the rules, whose actions name subscriptions (docs/events.md, Rules).
    await syncConfigRules(db, inventory);
    await checkRoutedSubscriptions(db, inventory.systems);

    const temporal = temporalTarget(config, client);
    const deps = buildActivityDeps({ config, temporal, db, keys, inventory, env, logger });
    cleanups.push(() => deps.providers.closeAll());
    const workerConnection = await NativeConnection.connect(connectOptions).catch((err: unknown) => {
      throw dev ? err : explainConnectError(err, target);
    });
    cleanups.push(() => workerConnection.close());
    const worker = await createKillSwitchWorker({
      connection: workerConnection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      deps,
      dataConverter,
      tuning: config.worker,
      logger,
    });
    if (obs.workerHealthPort !== undefined) {
      const health = await startWorkerHealthServer({
        port: obs.workerHealthPort,
        host: obs.workerHealthHost,
        metricsToken: obs.metricsToken,
        db,
        logger,
        current: () => ({ worker, connection: workerConnection }),
      });
      cleanups.push(() => health.close());
    }

    const app = createIngressApp(config, {
      logger,
      client,
      keys,
      db,
      evidence: deps.evidence,
      genericSecrets: secrets,
      inventory,
      env,
      codec,
      outbound: createOutboundControl({ db, workflows: createWorkflowDispatcher(temporal) }),
    });
    const server = await listen(app, config.port, config.host);
    const uiLogin = gateway?.loginUrl();
    logger.info(
      {
        ingress: `http://localhost:${config.port}/webhooks/generic`,
        temporalUi: config.temporal.uiUrl,
        // The one-time login link carries a credential: it is in the banner (the terminal), never in
        // the logs, which are shipped and kept.
        codecTokenFile: path.resolve(config.dataDir, 'codec-token'),
        taskQueue: config.temporal.taskQueue,
      },
      'kill switch ready',
    );
    // For people: one compact block (on stderr, so JSON logs on stdout stay parseable).
    process.stderr.write(
      boot.readyBanner({
        ingress: `http://localhost:${config.port}`,
        ui: config.temporal.uiUrl,
        ...(uiLogin ? { uiLogin } : {}),
        dataDir: config.dataDir,
        secretFiles: [
          ...(config.serverKey ? [] : ['server.key']),
          ...(config.webhook.genericSecrets ? [] : ['generic-webhook-secret']),
          'codec-token',
          LOCAL_API_TOKEN_FILE,
          ...(demo ? [DEMO_ADMIN_TOKEN_FILE] : []),
        ],
        inventory: boot.inventoryFile(config) ?? 'embedded (the demo system only)',
        ...(demo ? { demo: { system: DEMO_SYSTEM, url: demo.url } } : {}),
      }),
    );
    const stopSweeper = startSweeper(
      db,
      deps.evidence,
      logger,
      undefined,
      deliveryRetentionMs(deps.inventory.outbound),
    );
    const stopOutboundSweep = startOutboundSweep(deps.outbound, logger);
    cleanups.push(async () => {
      stopSweeper();
      stopOutboundSweep();
      await deps.outbound?.close();
    });

    // The worker reacts to SIGINT/SIGTERM by draining in-flight tasks; stop taking requests at once.
    const stopIngress = () => {
      logger.info('shutting down: ingress closed, worker draining');
      server.close();
    };
    process.once('SIGINT', stopIngress);
    process.once('SIGTERM', stopIngress);
    await worker.run();
    server.close();
  } finally {
    await cleanup();
    logger.info('stopped');
  }
}

main().catch((err) => {
  process.stderr.write(`kill switch failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
