/**
 * What a run's history says each activity did, for regular activities (scheduled/started/failed
 * events) and local activities (one `core_local_activity` marker per result, whose `data` payload
 * names the activity type and attempt; a marker with a backoff is an attempt that failed and waits
 * on a server timer before the next).
 */
import type { temporal } from '@temporalio/proto';

type History = temporal.api.history.v1.IHistory;

export interface ActivityCount {
  /** How many times the workflow asked for it: ActivityTaskScheduled events plus final local-activity markers. */
  scheduled: number;
  /** The highest attempt a started event or a marker reports (retries of one request). */
  maxAttempt: number;
  failed: number;
  timedOut: number;
  /** It ran as a local activity (markers, not activity tasks). */
  local: boolean;
}

export interface LocalActivityMarker {
  eventId: string;
  activityType: string;
  attempt: number;
  /** Set when this attempt failed and the next one waits on a server timer. */
  backoff: unknown;
  failed: boolean;
  summary?: string;
}

/** The local-activity markers of a history, decoded (their `data` payload is plain JSON written by the SDK's core). */
export function localActivityMarkers(history: History): LocalActivityMarker[] {
  const out: LocalActivityMarker[] = [];
  for (const e of history.events ?? []) {
    const m = e.markerRecordedEventAttributes;
    if (!m || m.markerName !== 'core_local_activity') continue;
    const raw = m.details?.data?.payloads?.[0]?.data;
    if (!raw) continue;
    const data = JSON.parse(Buffer.from(raw).toString('utf8')) as {
      activity_type: string;
      attempt: number;
      backoff: unknown;
    };
    const summary = e.userMetadata?.summary?.data
      ? Buffer.from(e.userMetadata.summary.data).toString('utf8')
      : undefined;
    out.push({
      eventId: String(e.eventId),
      activityType: data.activity_type,
      attempt: data.attempt,
      backoff: data.backoff ?? null,
      failed: !!m.failure,
      ...(summary !== undefined ? { summary } : {}),
    });
  }
  return out;
}

/** Per activity type, from the run's history: the proof that something was (not) done twice. */
export function activityCountsOf(history: History): Record<string, ActivityCount> {
  const byScheduledId = new Map<string, string>();
  const counts: Record<string, ActivityCount> = {};
  const of = (name: string) =>
    (counts[name] ??= { scheduled: 0, maxAttempt: 0, failed: 0, timedOut: 0, local: false });
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes) {
      const name = e.activityTaskScheduledEventAttributes.activityType?.name ?? '?';
      byScheduledId.set(id, name);
      of(name).scheduled += 1;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const c = of(byScheduledId.get(String(started.scheduledEventId)) ?? '?');
      c.maxAttempt = Math.max(c.maxAttempt, started.attempt ?? 0);
    }
    if (e.activityTaskFailedEventAttributes)
      of(byScheduledId.get(String(e.activityTaskFailedEventAttributes.scheduledEventId)) ?? '?').failed += 1;
    if (e.activityTaskTimedOutEventAttributes)
      of(byScheduledId.get(String(e.activityTaskTimedOutEventAttributes.scheduledEventId)) ?? '?').timedOut +=
        1;
  }
  for (const m of localActivityMarkers(history)) {
    const c = of(m.activityType);
    c.local = true;
    c.maxAttempt = Math.max(c.maxAttempt, m.attempt);
    if (m.backoff) continue; // an attempt that failed; the request goes on
    c.scheduled += 1;
    if (m.failed) c.failed += 1;
  }
  return counts;
}

/** How many times the run asked for an activity of this type (regular or local). */
export function timesRequested(history: History, activityType: string): number {
  return activityCountsOf(history)[activityType]?.scheduled ?? 0;
}
