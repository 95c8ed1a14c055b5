/** A loopback HTTP server that records every request verbatim, for fakes at the network boundary. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** When it arrived (ms since the epoch). */
  at: number;
}

export interface Reply {
  status: number;
  /** Wait this long before answering. */
  delayMs?: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface RecordingServer {
  url: string;
  requests: RecordedRequest[];
  /** Replies to use, in order, before the normal handler answers again; `{ delayMs }` alone delays the normal answer. */
  script: Array<Reply | { delayMs: number }>;
  close(): Promise<void>;
}

export async function startRecorder(
  handler: (req: RecordedRequest) => Reply | Promise<Reply>,
): Promise<RecordingServer> {
  const requests: RecordedRequest[] = [];
  const script: Array<Reply | { delayMs: number }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      requests.push(rec);
      void (async () => {
        const scripted = script.shift();
        if (scripted?.delayMs) await new Promise((r) => setTimeout(r, scripted.delayMs));
        const reply = scripted && 'status' in scripted ? scripted : await handler(rec);
        res.writeHead(reply.status, { 'content-type': 'application/json', ...(reply.headers ?? {}) });
        res.end(
          reply.body === undefined
            ? ''
            : typeof reply.body === 'string'
              ? reply.body
              : JSON.stringify(reply.body),
        );
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
