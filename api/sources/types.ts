/**
 * The contract every scanner source implements. A source authenticates a delivery on its raw body
 * (constant-time compare, every active secret), then turns it into RawFindings. The ingress does
 * the rest the same way for all sources: delivery-id dedupe, reduction to Detections (the secret
 * stops there), sealing evidence, and signal-with-start of one killSwitch run per credential.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ServerKeys } from '../../contracts/keys';
import type { EnrichmentRequest } from '../../contracts/enrichment';
import type { RawFinding } from '../../contracts/finding';

export interface Delivery {
  rawBody: Buffer;
  headers: IncomingHttpHeaders;
  receivedAt: Date;
}

export type ParseResult =
  /** Findings to act on. `deliveryId` dedupes re-deliveries of this exact delivery across restarts. */
  | { kind: 'findings'; deliveryId?: string; findings: RawFinding[] }
  /** A delivery that is authentic but not actionable (a ping, an alert being resolved): recorded, answered 202. */
  | { kind: 'recorded'; deliveryId?: string; reason: string }
  /**
   * A delivery that names a finding without its value (GitHub's secret_scanning_alert): the ingress
   * durably starts an enrichment workflow that fetches the finding (an activity), reduces it, and
   * dispatches it like any other. The delivery is acknowledged once that workflow has started.
   */
  | {
      kind: 'enrich';
      deliveryId: string;
      request: EnrichmentRequest;
      /** Page a human after this long if the fetch keeps failing. */ escalateAfter?: string;
    };

/** What the ingress answers for an accepted delivery (used by sources with their own routes, e.g. GitLab). */
export type AcceptFn = (
  source: string,
  result: ParseResult,
  delivery: Delivery,
) => Promise<{ status: number; body: unknown }>;

export interface SourceHandler {
  /** Route: POST /webhooks/<name>. */
  readonly name: string;
  readonly bodyLimitBytes: number;
  /** Throws HttpProblem (401) when the delivery is not authentic. Runs before anything parses the body. */
  authenticate(delivery: Delivery): Promise<void> | void;
  /** Throws HttpProblem (400/422) on malformed input. */
  parse(delivery: Delivery): Promise<ParseResult> | ParseResult;
  /** Status for an accepted delivery when the sender expects something else than 202 (GitHub partner: 204). */
  readonly acceptedStatus?: number;
}

export interface SourceContext {
  keys: ServerKeys;
  /** Looks up an env var named by the config (secrets never live in the config file). */
  env: Record<string, string | undefined>;
}
