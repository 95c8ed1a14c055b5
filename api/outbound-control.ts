/**
 * `POST /admin/subscriptions/:id/test`: a `delivery.test` event queued for one subscription, its
 * delivery run woken, and the first attempt's result awaited (bounded by the subscription's timeout
 * plus a margin). The worker delivers it like any event, so the test exercises the real path and
 * lands in the delivery history.
 */
import { randomUUID } from 'node:crypto';
import { deliveryWorkflowId, eventEnvelopeSchema, EVENT_VERSION, wakeSignal } from '../contracts/events';
import type { Db } from '../lib/db';
import type { WorkflowDispatcher } from '../lib/dispatch';
import type { OutboundControl } from '../lib/subscriptions';
import { attemptsOf, enqueueFor, subscriptionRow } from '../store/outbound';

export function createOutboundControl(deps: {
  db: Db;
  workflows: WorkflowDispatcher;
  waitMarginMs?: number;
}): OutboundControl {
  return {
    async sendTest(id, by) {
      const row = await subscriptionRow(deps.db, id);
      const at = new Date().toISOString();
      const event = eventEnvelopeSchema.parse({
        id: `evt_test_${randomUUID().replace(/-/g, '')}`,
        type: 'delivery.test',
        version: EVENT_VERSION,
        occurredAt: at,
        source: 'secret-kill-switch',
        summary: `Test event for subscription ${row?.name ?? id}, sent by ${by}`.slice(0, 1024),
        data: {
          subscription: { id, name: row?.name ?? id },
          by: by.slice(0, 1024),
          message: 'A test of this subscription: no run is involved.',
        },
      });
      if (!row?.is_active)
        return {
          eventId: event.id,
          delivered: false,
          error: 'the subscription is switched off (isActive: false)',
        };
      await enqueueFor(deps.db, event, id);
      await deps.workflows.signalWithStart({
        workflowType: 'deliverEvents',
        workflowId: deliveryWorkflowId(id),
        args: [{ subscriptionId: id }],
        signal: wakeSignal,
        signalArgs: [],
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        staticSummary: `Deliver outbound events of subscription ${id}`,
      });
      const deadline = Date.now() + row.timeout_ms + (deps.waitMarginMs ?? 10_000);
      while (Date.now() < deadline) {
        const first = (await attemptsOf(deps.db, id, event.id))[0];
        if (first)
          return {
            eventId: event.id,
            delivered: first.success,
            ...(first.status_code !== null ? { statusCode: first.status_code } : {}),
            ...(first.error ? { error: first.error } : {}),
          };
        await new Promise((r) => setTimeout(r, 100));
      }
      return {
        eventId: event.id,
        delivered: false,
        error: 'no attempt yet: the event is queued and the worker will deliver it',
      };
    },
  };
}
