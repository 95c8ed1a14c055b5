/**
 * The composition root of the worker: builds activity dependencies once, registers the workflow
 * bundle and the activities on one task queue.
 */
import type { DataConverter } from '@temporalio/common';
import { Worker, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { createPagerDutySender } from '../activities/pagerduty';
import { createProviderRegistry, type ProviderRegistry } from '../activities/providers';
import { createSlackSender } from '../activities/slack';
import { createUpstreamClients } from '../activities/upstream';
import { createOutbound } from '../activities/outbound';
import { allowHostsOf, createAllowList } from '../lib/subscriptions';
import { OUTBOUND_FORMATTERS, outboundTransports } from '../activities/outbound/registry';
import { createDispatcher, createWorkflowDispatcher, type TemporalTarget } from '../lib/dispatch';
import type { Config, WorkerTuning } from '../lib/config';
import type { Db } from '../lib/db';
import { createEvidenceStore } from '../store/evidence';
import { sightingLedger } from '../store/sightings';
import { resolveInventoryEnv, type Inventory } from '../lib/inventory';
import { routesOf } from '../lib/routing';
import type { ServerKeys } from '../contracts/keys';
import type { Logger } from '../lib/logger';
import { prebuiltWorkflowBundle, WORKFLOWS_PATH } from './workflow-bundle';

export { WORKFLOWS_PATH };

export interface WorkerDepsInput {
  config: Config;
  /** The client the worker uses to dispatch enriched findings to their runs. */
  temporal: TemporalTarget;
  db: Db;
  keys: ServerKeys;
  inventory: Inventory;
  env: Record<string, string | undefined>;
  logger: Logger;
}

export function buildActivityDeps(input: WorkerDepsInput): ActivityDeps & { providers: ProviderRegistry } {
  const { config, db, keys, inventory, env, logger } = input;
  const checkedEnv = resolveInventoryEnv(inventory, env);
  const notifyLog = logger.child({ component: 'notifications' });
  const evidence = createEvidenceStore(db, keys, config.evidenceTtlHours);
  const workflows = createWorkflowDispatcher(input.temporal);
  const routes = routesOf(inventory.systems, checkedEnv);
  const slack = createSlackSender({
    token: config.slack.token,
    channel: config.slack.channel,
    apiUrl: config.slack.apiUrl,
    log: (m) =>
      notifyLog.info({ slack: { text: m.text } }, 'Slack is not configured; message logged instead'),
  });
  const pagerduty = createPagerDutySender({
    routingKey: config.pagerduty.routingKey,
    eventsUrl: config.pagerduty.eventsUrl,
    log: (e) => notifyLog.warn({ pagerduty: e }, 'PagerDuty is not configured; trigger logged instead'),
  });
  return {
    inventory,
    keys,
    dispatcher: createDispatcher({ workflows, evidence, sightings: sightingLedger(db) }),
    upstream: createUpstreamClients(inventory.sources, env),
    providers: createProviderRegistry(inventory, checkedEnv),
    db,
    evidence,
    slack,
    pagerduty,
    outbound: createOutbound({
      db,
      keys,
      env,
      workflows,
      log: logger.child({ component: 'outbound' }),
      slack,
      pagerduty,
      formatters: OUTBOUND_FORMATTERS,
      destinations: {
        allow: createAllowList(allowHostsOf(inventory.outbound.allowHosts, env.OUTBOUND_ALLOW_HOSTS)),
      },
      transports: outboundTransports(env, db),
      routes,
    }),
    routes,
    temporalUi: { uiUrl: config.temporal.uiUrl, namespace: config.temporal.namespace },
    ...(config.slack.digest && config.slack.token && config.slack.channel
      ? { slackDigest: { settings: config.slack.digest, channel: config.slack.channel } }
      : {}),
  };
}

/**
 * The workflow cache when WORKER_MAX_CACHED_WORKFLOWS is unset. The SDK's default grows with the
 * heap limit (~2,300 runs here); a contained run is two workflow tasks, so only runs waiting on
 * Slack or a human stay cached, and 200 kept a burst of 1,000 as fast as the SDK default with the
 * worker ~100 MiB smaller (docs/performance.md).
 */
export const DEFAULT_MAX_CACHED_WORKFLOWS = 200;

export async function createKillSwitchWorker(opts: {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  /** The encrypting data converter (lib/codec.ts); a prebuilt bundle is used only if built with its converter files. */
  dataConverter: DataConverter;
  /** Unset: the prebuilt dist/workflow-bundle.js when it is current, else the workflow code bundled now. */
  workflowBundle?: WorkflowBundleOption;
  /** WORKER_* settings (lib/config.ts); unset fields keep the SDK's defaults. */
  tuning?: WorkerTuning;
  /** Told which workflow bundle the worker runs, and why not the prebuilt one. */
  logger?: Logger;
}): Promise<Worker> {
  const t = opts.tuning ?? {};
  let workflowBundle = opts.workflowBundle;
  if (!workflowBundle) {
    // Bundling at start costs ~1.5 s of CPU and leaves the worker 110-140 MiB larger for its life (docs/performance.md).
    const prebuilt = prebuiltWorkflowBundle({
      workflowsPath: WORKFLOWS_PATH,
      converters: opts.dataConverter,
    });
    if (prebuilt.ok) {
      workflowBundle = { codePath: prebuilt.codePath };
      opts.logger?.info({ workflowBundle: prebuilt.codePath }, 'running the prebuilt workflow bundle');
    } else if (prebuilt.missing) {
      opts.logger?.info(`${prebuilt.reason}; bundling the workflow code at start`);
    } else {
      opts.logger?.warn(`${prebuilt.reason}; bundling the workflow code at start instead`);
    }
  }
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    activities: createActivities(opts.deps),
    dataConverter: opts.dataConverter,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    shutdownGraceTime: '30s',
    maxCachedWorkflows: t.maxCachedWorkflows ?? DEFAULT_MAX_CACHED_WORKFLOWS,
    ...(t.maxConcurrentActivityTaskExecutions !== undefined
      ? { maxConcurrentActivityTaskExecutions: t.maxConcurrentActivityTaskExecutions }
      : {}),
    ...(t.maxConcurrentWorkflowTaskExecutions !== undefined
      ? { maxConcurrentWorkflowTaskExecutions: t.maxConcurrentWorkflowTaskExecutions }
      : {}),
    ...(t.maxConcurrentActivityTaskPolls !== undefined
      ? {
          activityTaskPollerBehavior: {
            type: 'simple-maximum' as const,
            maximum: t.maxConcurrentActivityTaskPolls,
          },
        }
      : {}),
    ...(t.maxConcurrentWorkflowTaskPolls !== undefined
      ? {
          workflowTaskPollerBehavior: {
            type: 'simple-maximum' as const,
            maximum: t.maxConcurrentWorkflowTaskPolls,
          },
        }
      : {}),
    ...(t.reuseV8Context !== undefined ? { reuseV8Context: t.reuseV8Context } : {}),
  });
}
