/**
 * The worker as its own process (production split). Connects, builds dependencies once, runs until
 * SIGINT/SIGTERM drains it, then closes the connection and the pools.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import * as boot from '../lib/bootstrap';
import { loadConfig } from '../lib/config';
import { createPostgresDb, migrate } from '../lib/db';
import { resolveInventoryEnv } from '../lib/inventory';
import { createLogger } from '../lib/logger';
import { codecFromConfig, killSwitchDataConverter } from '../lib/codec';
import { startSweeper } from '../store/sweeper';
import { startOutboundSweep } from '../activities/outbound';
import { deliveryRetentionMs } from '../lib/subscriptions';
import { temporalTarget } from '../lib/dispatch';
import { installTemporalLogging } from '../lib/temporal-logging';
import { freeLoopbackPort, startWorkerHealthServer } from '../lib/health';
import { describeTemporalConnection, explainConnectError } from '../lib/temporal-connection';
import { buildActivityDeps, createKillSwitchWorker } from './build';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({
    level: config.logLevel,
    name: 'kill-switch-worker',
    format: config.logFormat,
  });
  const obs = config.observability;
  // The SDK's worker metrics are served through the health endpoint's /metrics (lib/metrics.ts).
  installTemporalLogging(logger, {
    ...(obs.workerHealthPort !== undefined ? { sdkMetricsPort: await freeLoopbackPort() } : {}),
  });
  const mode = { embedded: false };
  const keys = boot.serverKeys(config, mode, logger);
  const inventory = boot.inventory(config, logger);
  resolveInventoryEnv(inventory, process.env); // fail before connecting anything
  const db = createPostgresDb(boot.requireSharedDatabase(config, 'worker'));
  let running: { worker: Worker; connection: NativeConnection } | undefined;
  const health =
    obs.workerHealthPort !== undefined
      ? await startWorkerHealthServer({
          port: obs.workerHealthPort,
          host: obs.workerHealthHost,
          metricsToken: obs.metricsToken,
          db,
          logger,
          current: () => running,
        })
      : undefined;
  await migrate(db, logger);
  // One set of options (TEMPORAL_* variables, profile, TLS, API key) for both connections.
  const target = config.temporal.connection;
  logger.info({ temporal: describeTemporalConnection(target) }, 'connecting to Temporal');
  // The worker's own client dispatches enriched findings (GitHub alerts) to their runs.
  const clientConnection = await Connection.connect(target.connectOptions()).catch((err: unknown) => {
    throw explainConnectError(err, target);
  });
  const dataConverter = killSwitchDataConverter(codecFromConfig(config, keys));
  const client = new Client({
    connection: clientConnection,
    namespace: config.temporal.namespace,
    dataConverter,
  });
  const temporal = temporalTarget(config, client);
  const deps = buildActivityDeps({ config, temporal, db, keys, inventory, env: process.env, logger });
  const connection = await NativeConnection.connect(target.connectOptions()).catch((err: unknown) => {
    throw explainConnectError(err, target);
  });
  try {
    const worker = await createKillSwitchWorker({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      deps,
      dataConverter,
      tuning: config.worker,
      logger,
    });
    running = { worker, connection };
    logger.info({ taskQueue: config.temporal.taskQueue }, 'worker running');
    const stopSweeper = startSweeper(
      db,
      deps.evidence,
      logger,
      undefined,
      deliveryRetentionMs(deps.inventory.outbound),
    );
    const stopOutboundSweep = startOutboundSweep(deps.outbound, logger);
    try {
      await worker.run();
    } finally {
      stopSweeper();
      stopOutboundSweep();
      await deps.outbound?.close();
    }
  } finally {
    await connection.close();
    await clientConnection.close();
    await deps.providers.closeAll();
    await health?.close();
    await db.close();
  }
}

main().catch((err) => {
  process.stderr.write(`worker failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
