/**
 * Workflow unit tests, as the Temporal samples do them: the real workflow code on a local Temporal
 * dev server (`TestWorkflowEnvironment.createLocal`, the project's own CLI, its search attributes
 * registered) with fake activities, plain functions that record what they were asked and answer as
 * each test scripts them. No provider, no database, no Slack, no PagerDuty.
 *
 * One environment and one workflow bundle per file; one worker on a fresh task queue per test, so
 * a file's tests may run concurrently (their timers overlap). createLocal cannot skip time: durable timers (overlap, approval, hold, retry window) take the
 * durations the tests put in the fakes' answers, a second or two.
 */
import { randomBytes } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type LogEntry,
  type WorkflowBundleOption,
} from '@temporalio/worker';
import type { KillSwitchActivities } from '../../activities';
import { CONVERTER_PATHS } from '../../lib/codec';
import { resolveTemporalCli } from '../../tools/temporal-cli';
import { prebuiltWorkflowBundle, WORKFLOWS_PATH } from '../../worker/workflow-bundle';
import { currentStepQuery, SearchAttributes, type Step, type StepStatus } from '../../contracts/run';

type Acts = KillSwitchActivities;
export type ActivityName = keyof Acts;
type Arg<K extends ActivityName> = Parameters<Acts[K]>[0];
type Answer<K extends ActivityName> = Awaited<ReturnType<Acts[K]>>;

/** A scripted activity: gets the input and which call of that activity this is (1, 2, ...). */
export type Script<K extends ActivityName> = (arg: Arg<K>, n: number) => Answer<K> | Promise<Answer<K>>;
export type Scripts = { [K in ActivityName]?: Script<K> };

export interface Call {
  name: ActivityName;
  arg: any;
  /** When the fake was called (ms since the epoch). */
  at: number;
}

/**
 * The fake activities of one test: every call is recorded in order; an activity without a script
 * is recorded too and fails at once (ApplicationFailure type `UnscriptedActivity`, non-retryable),
 * so an unexpected call shows in the recorded names and in the run's failure.
 */
export class FakeActivities {
  readonly calls: Call[] = [];
  private readonly counts = new Map<ActivityName, number>();

  constructor(readonly scripts: Scripts) {}

  /** The activities to register on the worker: one plain function per scripted name. */
  get activities(): Partial<Acts> {
    const acts: Record<string, (arg: unknown) => Promise<unknown>> = {};
    for (const name of Object.keys(this.scripts) as ActivityName[]) {
      acts[name] = async (arg: unknown) => {
        const n = (this.counts.get(name) ?? 0) + 1;
        this.counts.set(name, n);
        this.calls.push({ name, arg, at: Date.now() });
        return (this.scripts[name] as Script<ActivityName>)(arg as never, n);
      };
    }
    // The worker's fallback for an activity type it has no function for.
    acts.default = async (arg: unknown) => {
      const name = Context.current().info.activityType as ActivityName;
      this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
      this.calls.push({ name, arg, at: Date.now() });
      throw ApplicationFailure.create({
        type: 'UnscriptedActivity',
        message: `${name} has no script in this test`,
        nonRetryable: true,
      });
    };
    return acts as Partial<Acts>;
  }

  /** The names of the calls, in order, optionally without some (e.g. the fire-and-forget progress). */
  names(opts: { without?: ActivityName[] } = {}): ActivityName[] {
    return this.calls.map((c) => c.name).filter((n) => !opts.without?.includes(n));
  }

  /** The inputs the activity was called with, in order. */
  args<K extends ActivityName>(name: K): Arg<K>[] {
    return this.calls.filter((c) => c.name === name).map((c) => c.arg as Arg<K>);
  }

  count(name: ActivityName): number {
    return this.counts.get(name) ?? 0;
  }
}

export interface WorkflowEnv {
  env: TestWorkflowEnvironment;
  /** Runs `fn` while a worker with these fakes polls a fresh task queue. */
  withWorker<T>(fakes: FakeActivities, fn: (taskQueue: string) => Promise<T>): Promise<T>;
  /** What the workflows and the SDK logged at WARN and above. */
  logs: LogEntry[];
  teardown(): Promise<void>;
}

const quiet = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, log() {} } as never;
const logs: LogEntry[] = [];
let runtimeInstalled = false;

export async function startWorkflowEnv(): Promise<WorkflowEnv> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    // Kept, not printed: a test may look for a failure the workflow logged.
    Runtime.install({ logger: new DefaultLogger('WARN', (entry) => void logs.push(entry)) });
  }
  const [env, workflowBundle] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: resolveTemporalCli() },
        searchAttributes: Object.values(SearchAttributes),
      },
      // The production failure converter: failure messages travel encoded, as they do in the worker.
      client: { dataConverter: { ...CONVERTER_PATHS } },
    }),
    workflowCode(),
  ]);
  return {
    env,
    logs,
    async withWorker(fakes, fn) {
      const taskQueue = `unit-${randomBytes(6).toString('hex')}`;
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle,
        activities: fakes.activities,
        dataConverter: { ...CONVERTER_PATHS },
        shutdownGraceTime: '1s',
      });
      return worker.runUntil(fn(taskQueue));
    },
    teardown: () => env.teardown(),
  };
}

/** The prebuilt bundle (npm run build) when it is current, else the workflow code bundled once. */
async function workflowCode(): Promise<WorkflowBundleOption> {
  const prebuilt = prebuiltWorkflowBundle({ workflowsPath: WORKFLOWS_PATH, converters: CONVERTER_PATHS });
  if (prebuilt.ok) return { codePath: prebuilt.codePath };
  return bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, ...CONVERTER_PATHS, logger: quiet });
}

/** Polls the currentStep query until the run is at `step` (10 s at most). */
export async function waitForStep(handle: WorkflowHandle, step: Step): Promise<StepStatus> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await handle.query(currentStepQuery);
    if (s.step === step) return s;
    if (Date.now() > deadline) throw new Error(`never reached ${step}; at ${s.step}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves once `predicate` holds (polled; 10 s at most). */
export async function until(what: string, predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
