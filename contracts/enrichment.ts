/**
 * Findings a webhook only names (GitHub secret scanning alerts): what the ingress asks the
 * enrichment run to fetch, that run's input, and the signal it sends to a run that escalated early.
 * Carries no secret. Pure code.
 */
import { defineSignal } from '@temporalio/workflow';
import type { Outcome } from './outcomes';

/** What an enrichment activity needs to fetch one finding. Carries no secret. */
export type EnrichmentRequest = {
  kind: 'github_alert';
  /** alert.url when the delivery has it; otherwise built from repository + number. */
  alertUrl?: string;
  repository: string;
  alertNumber: number;
  action: string;
};

/** Input of the enrichment run that fetches a finding a webhook only names (GitHub alerts). */
export interface EnrichInput {
  source: string;
  deliveryId: string;
  request: EnrichmentRequest;
  receivedAt: string;
  /**
   * How long the fetch may keep failing before the finding is escalated without its value (a human
   * is paged) while the fetch goes on; default ENRICH_ESCALATE_AFTER (workflows/profiles.ts).
   */
  escalateAfter?: string;
}

/** The run a late-enriched finding joined, told to the run that escalated it early. */
export interface EnrichedRun {
  workflowId: string;
  runId: string;
  temporalUiUrl: string;
  /** That run's first recorded outcome. */
  outcome: Outcome;
}

/**
 * Sent by enrichDetection to the run that escalated a finding it could not fetch in time, once the
 * fetch succeeded and the credential's own run recorded its outcome: a contained credential ends
 * the escalation (the PagerDuty incident is resolved, Slack and the audit say by which run).
 */
export const enrichedSignal = defineSignal<[EnrichedRun]>('enriched');

/** One enrichment run per delivery id of a source: a re-sent delivery finds the run of its first copy. */
export function enrichWorkflowId(source: string, deliveryId: string): string {
  return `enrich-${source}-${deliveryId}`;
}
