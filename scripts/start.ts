/**
 * `npm start`: the whole kill switch in one process on embedded defaults. Starts a Temporal dev
 * server (unless TEMPORAL_ADDRESS is set), opens the audit store (PGlite unless DATABASE_URL is
 * set), runs the worker and the ingress. Ctrl-C drains the worker and stops everything it started.
 */
import path from 'node:path';
import { Connection, Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import * as boot from '../lib/bootstrap';
import { loadConfig } from '../lib/config';
import { migrate, openDb } from '../lib/db';
import { resolveInventoryEnv } from '../lib/inventory';
import { startSweeper } from '../lib/sweeper';
import { temporalTarget } from '../lib/dispatch';
import { createLogger } from '../lib/logger';
import { codecFromConfig, killSwitchDataConverter } from '../lib/codec';
import { installTemporalLogging } from '../lib/temporal-logging';
import { resolveTemporalCli } from '../lib/temporal-cli';
import { ensureSearchAttributes, startDevServer, type DevServer } from '../lib/temporal-dev';
import { createIngressApp, listen } from '../api/server';
import { buildActivityDeps, createKillSwitchWorker } from '../worker/build';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel });
  installTemporalLogging(logger);
  const mode = { embedded: true };
  const keys = boot.serverKeys(config, mode, logger);
  const secrets = boot.genericWebhookSecrets(config, mode, logger);
  const inventory = boot.inventory(config, logger);
  resolveInventoryEnv(inventory, process.env); // fail before starting anything
  const codec = codecFromConfig(config, keys);
  const dataConverter = killSwitchDataConverter(codec);
  if (!config.codec.keys) logger.info({ keyId: codec.activeKeyId }, 'KILLSWITCH_CODEC_KEYS unset: Temporal payloads are encrypted with a key derived from the server key');

  const cleanups: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err) => logger.error({ err }, 'shutdown step failed'));
  };

  try {
    let address = config.temporal.address;
    let dev: DevServer | undefined;
    if (!address) {
      const cli = resolveTemporalCli({ log: (m) => logger.info(m) });
      dev = await startDevServer({
        cli,
        ip: '127.0.0.1',
        port: config.temporal.devPort,
        uiPort: config.temporal.devUiPort,
        dbFile: path.resolve(config.dataDir, 'temporal.db'),
        // Measured by `npm run bench`: WAL with synchronous=normal contains a burst ~46 % faster than
        // SQLite's defaults (rollback journal, synchronous=full). It survives a crash of the process;
        // only an OS crash or power loss can drop the last commits of this local store.
        sqlitePragmas: { journal_mode: 'wal', synchronous: 'normal' },
        logFile: path.resolve(config.dataDir, 'temporal.log'),
        namespace: config.temporal.namespace,
        // The UI asks the ingress to decode payloads (browser-side, from the UI's origin).
        uiCodecEndpoint: `${config.publicBaseUrl?.replace(/\/+$/, '') ?? `http://localhost:${config.port}`}/codec`,
      });
      cleanups.push(() => dev!.stop());
      address = dev.address;
      logger.info({ address, ui: dev.uiUrl }, 'Temporal dev server started');
    }

    const connection = await Connection.connect({ address });
    cleanups.push(() => connection.close());
    if (!dev) {
      const sa = await ensureSearchAttributes(connection, config.temporal.namespace);
      if (sa.error) logger.warn({ error: sa.error }, 'could not check search attributes; register them as README describes');
      else if (sa.added.length) logger.info({ added: sa.added }, 'search attributes registered');
    }
    const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter });

    const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    cleanups.push(() => db.close());
    const applied = await migrate(db, logger);
    logger.info({ store: db.kind, applied }, 'audit store ready');

    const temporal = temporalTarget(config, client);
    const deps = buildActivityDeps({ config, temporal, db, keys, inventory, env: process.env, logger });
    cleanups.push(() => deps.providers.closeAll());
    const workerConnection = await NativeConnection.connect({ address });
    cleanups.push(() => workerConnection.close());
    const worker = await createKillSwitchWorker({
      connection: workerConnection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      deps,
      dataConverter,
      tuning: config.worker,
    });

    const app = createIngressApp(config, {
      logger,
      client,
      keys,
      db,
      evidence: deps.evidence,
      genericSecrets: secrets,
      inventory,
      env: process.env,
      codec,
      codecLocalUi: true,
    });
    const server = await listen(app, config.port, config.host);
    logger.info(
      { ingress: `http://localhost:${config.port}/webhooks/generic`, temporalUi: config.temporal.uiUrl, taskQueue: config.temporal.taskQueue },
      'kill switch ready',
    );
    const stopSweeper = startSweeper(db, deps.evidence, logger);
    cleanups.push(async () => stopSweeper());

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
