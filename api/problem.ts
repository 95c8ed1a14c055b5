/** RFC 9457 problem details: every error the ingress returns, never a stack trace. */
import type { Response } from 'express';
import type { HttpProblem } from '../contracts/errors';

export function sendProblem(res: Response, p: HttpProblem, instance?: string): void {
  for (const [k, v] of Object.entries(p.headers)) res.setHeader(k, v);
  res
    .status(p.status)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        type: `urn:secret-kill-switch:problem:${p.slug}`,
        title: p.title,
        status: p.status,
        detail: p.detail,
        ...(instance ? { instance } : {}),
        ...p.extras,
      }),
    );
}
