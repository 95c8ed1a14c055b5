/** RFC 9457 problem details: every error the ingress returns, never a stack trace. */
import type { Response } from 'express';

export interface ProblemExtras {
  errors?: Array<{ field: string; message: string }>;
  [key: string]: unknown;
}

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly extras: ProblemExtras = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'HttpProblem';
  }
}

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
