/**
 * Jira Cloud REST API v3 fake, at the wire: the endpoints the `jira` format uses, validated as
 * Jira documents them, answering with Jira's shapes and its 400 body `{ errorMessages, errors }`.
 *
 * - Auth: `Basic base64(email:token)` (Cloud API token) or `Bearer <token>`; anything else is 401.
 * - POST /rest/api/3/issue: the project and issue type must exist, `summary` is required, one line,
 *   at most 255 characters, `description` a valid ADF document (type doc, version 1, known node
 *   types, text nodes with non-empty string text, known marks, links with an href), labels strings
 *   without spaces, `properties` [{ key, value }]. 201 { id, key, self }; keys PROJ-1, PROJ-2…
 * - GET /rest/api/3/issue/{key}?fields=status, GET and POST /rest/api/3/issue/{key}/transitions
 *   (a workflow of statuses and transitions with ids; an id not available from the current status
 *   is a 400), GET and POST /rest/api/3/issue/{key}/comment (comments with properties, ADF bodies),
 *   POST /rest/api/3/comment/list?expand=properties (the only read that returns comment
 *   properties, as documented), POST /rest/api/3/search/jql with the JQL the format sends:
 *   `project = "X" AND labels = "y" ORDER BY created ASC` (clauses `project`/`labels` `=`, joined by
 *   AND; anything else is a 400), returning requested issue properties.
 * - Scripted failures: `failNext(rule)` answers the next matching requests with a status and
 *   Retry-After, either before Jira acts or after it did (`committed`: the answer is lost, the
 *   effect stays: a crash window).
 */
import { startRecorder, type RecordedRequest, type RecordingServer, type Reply } from './http-recorder';

export interface JiraWorkflow {
  initial: string;
  /** `from` unset: a global transition, available from every other status. */
  transitions: Array<{ id: string; name: string; to: string; from?: string[] }>;
}

/** Jira's default software workflow, simplified: To Do → In Progress → Done, and back. */
export const DEFAULT_WORKFLOW: JiraWorkflow = {
  initial: 'To Do',
  transitions: [
    { id: '11', name: 'Start progress', from: ['To Do'], to: 'In Progress' },
    { id: '21', name: 'Stop progress', from: ['In Progress'], to: 'To Do' },
    { id: '31', name: 'Done', from: ['To Do', 'In Progress'], to: 'Done' },
    { id: '41', name: 'Reopen', from: ['Done'], to: 'To Do' },
  ],
};

export interface FakeComment {
  id: string;
  body: unknown;
  properties: Array<{ key: string; value: unknown }>;
  created: string;
}

export interface FakeIssue {
  id: string;
  key: string;
  project: string;
  issueType: string;
  summary: string;
  description: unknown;
  labels: string[];
  status: string;
  properties: Record<string, unknown>;
  comments: FakeComment[];
  created: string;
  /** Transition ids applied, in order. */
  transitioned: string[];
}

export interface FailRule {
  method?: string;
  /** Matched against the path without the query. */
  path?: RegExp;
  status: number;
  retryAfter?: string;
  /** How many matching requests fail (default 1). */
  times?: number;
  /** Jira acts, then the answer is replaced (a lost answer). */
  committed?: boolean;
  body?: unknown;
}

export interface JiraFakeOptions {
  email?: string;
  token: string;
  /** Bearer (Data Center personal access token) instead of Basic email:token. */
  bearer?: boolean;
  /** Project keys and their issue types (default SEC: Task, Bug). */
  projects?: Record<string, string[]>;
  workflow?: JiraWorkflow;
}

export interface JiraFake extends RecordingServer {
  issues: FakeIssue[];
  issue(key: string): FakeIssue | undefined;
  /** Answers the next matching requests as the rule says. */
  failNext(rule: FailRule): void;
  /** Every 400 the fake answered, with its body (what was wrong with a request). */
  refusals: Array<{ path: string; body: { errorMessages: string[]; errors: Record<string, string> } }>;
}

// ---------------------------------------------------------------------------------------------
// ADF, as Jira checks it (the subset of node types and marks of the ADF schema).

const BLOCKS = new Set([
  'paragraph',
  'heading',
  'bulletList',
  'orderedList',
  'listItem',
  'blockquote',
  'codeBlock',
  'rule',
  'panel',
  'table',
  'tableRow',
  'tableHeader',
  'tableCell',
]);
const INLINE = new Set(['text', 'hardBreak', 'mention', 'emoji', 'inlineCard']);
const MARKS = new Set(['strong', 'em', 'code', 'link', 'strike', 'underline', 'subsup', 'textColor']);
/** Which children a node may have (unlisted block nodes: blocks). */
const CHILDREN: Record<string, (t: string) => boolean> = {
  doc: (t) => BLOCKS.has(t) && !['listItem', 'tableRow', 'tableHeader', 'tableCell'].includes(t),
  paragraph: (t) => INLINE.has(t),
  heading: (t) => INLINE.has(t),
  codeBlock: (t) => t === 'text',
  bulletList: (t) => t === 'listItem',
  orderedList: (t) => t === 'listItem',
  listItem: (t) => ['paragraph', 'bulletList', 'orderedList', 'codeBlock'].includes(t),
  table: (t) => t === 'tableRow',
  tableRow: (t) => t === 'tableHeader' || t === 'tableCell',
};

/** What is wrong with an ADF document, or undefined. */
export function adfProblem(doc: unknown): string | undefined {
  const d = doc as { type?: unknown; version?: unknown; content?: unknown };
  if (!d || typeof d !== 'object') return 'not an object';
  if (d.type !== 'doc') return 'type is not doc';
  if (d.version !== 1) return 'version is not 1';
  if (!Array.isArray(d.content)) return 'content is not an array';
  const walk = (node: unknown, parent: string, at: string): string | undefined => {
    const n = node as { type?: unknown; text?: unknown; marks?: unknown; content?: unknown; attrs?: unknown };
    if (!n || typeof n !== 'object' || typeof n.type !== 'string') return `${at}: not a node`;
    if (!BLOCKS.has(n.type) && !INLINE.has(n.type)) return `${at}: unknown node type ${n.type}`;
    const allowed = CHILDREN[parent] ?? ((t: string) => BLOCKS.has(t));
    if (!allowed(n.type)) return `${at}: ${n.type} not allowed in ${parent}`;
    if (n.type === 'text') {
      if (typeof n.text !== 'string' || n.text.length === 0) return `${at}: text must be a non-empty string`;
      if (n.content !== undefined) return `${at}: text has no content`;
      if (n.marks !== undefined) {
        if (!Array.isArray(n.marks)) return `${at}: marks is not an array`;
        for (const m of n.marks as Array<{ type?: unknown; attrs?: { href?: unknown } }>) {
          if (typeof m?.type !== 'string' || !MARKS.has(m.type)) return `${at}: unknown mark`;
          if (m.type === 'link' && typeof m.attrs?.href !== 'string') return `${at}: link without href`;
        }
      }
      return undefined;
    }
    if (n.content === undefined) return undefined;
    if (!Array.isArray(n.content)) return `${at}: content is not an array`;
    if (['bulletList', 'orderedList', 'listItem'].includes(n.type) && n.content.length === 0)
      return `${at}: ${n.type} is empty`;
    for (const [i, child] of n.content.entries()) {
      const p = walk(child, n.type, `${at}.content[${i}]`);
      if (p) return p;
    }
    return undefined;
  };
  for (const [i, child] of d.content.entries()) {
    const p = walk(child, 'doc', `content[${i}]`);
    if (p) return p;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

/** Parses the JQL the format sends: `field = "value"` clauses joined by AND, an optional ORDER BY. */
function parseJql(jql: string): Array<{ field: string; value: string }> | undefined {
  const [where] = jql.split(/\s+ORDER\s+BY\s+/i);
  const clauses = (where ?? '').split(/\s+AND\s+/i);
  const out: Array<{ field: string; value: string }> = [];
  for (const c of clauses) {
    const m = /^\s*(project|labels)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$/i.exec(c);
    if (!m) return undefined;
    out.push({ field: m[1]!.toLowerCase(), value: m[2]!.replace(/\\(.)/g, '$1') });
  }
  return out;
}

function bad(errorMessages: string[], errors: Record<string, string> = {}): Reply {
  return { status: 400, body: { errorMessages, errors } };
}

export async function startJiraFake(opts: JiraFakeOptions): Promise<JiraFake> {
  const projects = opts.projects ?? { SEC: ['Task', 'Bug'] };
  const workflow = opts.workflow ?? DEFAULT_WORKFLOW;
  const issues: FakeIssue[] = [];
  const counters = new Map<string, number>();
  let nextId = 10000;
  let nextCommentId = 20000;
  /** Creation times strictly increase, so `ORDER BY created` and `orderBy=-created` are total. */
  let clock = Date.now();
  const now = () => new Date(++clock).toISOString();
  const rules: FailRule[] = [];
  const refusals: JiraFake['refusals'] = [];

  const authorized = (r: RecordedRequest) => {
    const h = r.headers.authorization ?? '';
    if (opts.bearer) return h === `Bearer ${opts.token}`;
    return h === `Basic ${Buffer.from(`${opts.email}:${opts.token}`).toString('base64')}`;
  };
  const available = (issue: FakeIssue) =>
    workflow.transitions.filter((t) => (t.from ? t.from.includes(issue.status) : t.to !== issue.status));

  const handle = (r: RecordedRequest): Reply => {
    if (!authorized(r))
      return {
        status: 401,
        body: { errorMessages: ['Client must be authenticated to access this resource.'], errors: {} },
      };
    const url = new URL(r.path, 'http://jira.local');
    const path = url.pathname;
    let body: any;
    if (r.method === 'POST') {
      if (!String(r.headers['content-type'] ?? '').startsWith('application/json'))
        return { status: 415, body: { errorMessages: ['Unsupported Media Type'], errors: {} } };
      try {
        body = JSON.parse(r.body);
      } catch {
        return bad(['Unexpected character in the request body.']);
      }
    }

    if (r.method === 'POST' && path === '/rest/api/3/issue') {
      const f = body?.fields ?? {};
      const errors: Record<string, string> = {};
      const types = projects[f.project?.key];
      if (!types) errors.project = 'valid project is required';
      else if (!types.includes(f.issuetype?.name)) errors.issuetype = 'Specify a valid issue type';
      if (typeof f.summary !== 'string' || f.summary.trim() === '')
        errors.summary = 'You must specify a summary of the issue.';
      else if (/[\r\n]/.test(f.summary))
        errors.summary = 'The summary is invalid because it contains newline characters.';
      else if (f.summary.length > 255) errors.summary = 'Summary must be less than 255 characters.';
      if (f.description !== undefined && adfProblem(f.description))
        errors.description =
          'Operation value must be an Atlassian Document (see the Atlassian Document Format)';
      if (
        f.labels !== undefined &&
        (!Array.isArray(f.labels) ||
          f.labels.some((l: unknown) => typeof l !== 'string' || /\s/.test(l) || l === ''))
      )
        errors.labels = 'The label must not contain spaces.';
      const props = body?.properties ?? [];
      if (
        !Array.isArray(props) ||
        props.some((p: any) => typeof p?.key !== 'string' || p.value === undefined)
      )
        errors.properties = 'Invalid issue properties.';
      if (Object.keys(errors).length) return bad([], errors);
      const n = (counters.get(f.project.key) ?? 0) + 1;
      counters.set(f.project.key, n);
      const issue: FakeIssue = {
        id: String(nextId++),
        key: `${f.project.key}-${n}`,
        project: f.project.key,
        issueType: f.issuetype.name,
        summary: f.summary,
        description: f.description,
        labels: f.labels ?? [],
        status: workflow.initial,
        properties: Object.fromEntries(props.map((p: any) => [p.key, p.value])),
        comments: [],
        created: now(),
        transitioned: [],
      };
      issues.push(issue);
      return {
        status: 201,
        body: { id: issue.id, key: issue.key, self: `${rec.url}/rest/api/3/issue/${issue.id}` },
      };
    }

    if (r.method === 'POST' && path === '/rest/api/3/search/jql') {
      if (typeof body?.jql !== 'string') return bad(['The JQL query is required.']);
      const clauses = parseJql(body.jql);
      if (!clauses) return bad([`Error in the JQL Query: the fake only knows project and labels.`]);
      const max = Math.min(Number(body.maxResults ?? 50), 5000);
      const found = issues
        .filter((i) =>
          clauses.every((c) => (c.field === 'project' ? i.project === c.value : i.labels.includes(c.value))),
        )
        .sort((a, b) => a.created.localeCompare(b.created))
        .slice(0, max);
      const wanted: string[] = Array.isArray(body.properties) ? body.properties : [];
      return {
        status: 200,
        body: {
          issues: found.map((i) => ({
            id: i.id,
            key: i.key,
            fields: { summary: i.summary },
            ...(wanted.length
              ? {
                  properties: Object.fromEntries(
                    wanted.filter((k) => k in i.properties).map((k) => [k, i.properties[k]]),
                  ),
                }
              : {}),
          })),
          isLast: true,
        },
      };
    }

    if (r.method === 'POST' && path === '/rest/api/3/comment/list') {
      if (!Array.isArray(body?.ids) || body.ids.some((x: unknown) => typeof x !== 'number'))
        return bad(['ids must be a list of comment ids']);
      const expand = (url.searchParams.get('expand') ?? '').split(',');
      const all = issues.flatMap((i) => i.comments);
      return {
        status: 200,
        body: {
          values: all
            .filter((c) => body.ids.includes(Number(c.id)))
            .map((c) => ({
              id: c.id,
              body: c.body,
              created: c.created,
              ...(expand.includes('properties') ? { properties: c.properties } : {}),
            })),
          isLast: true,
        },
      };
    }

    const m = /^\/rest\/api\/3\/issue\/([^/]+)(\/comment|\/transitions)?$/.exec(path);
    const issue = m ? issues.find((i) => i.key === decodeURIComponent(m[1]!) || i.id === m[1]) : undefined;
    if (m && !issue)
      return {
        status: 404,
        body: {
          errorMessages: ['Issue does not exist or you do not have permission to see it.'],
          errors: {},
        },
      };
    if (m && issue) {
      const sub = m[2];
      if (!sub && r.method === 'GET')
        return {
          status: 200,
          body: { id: issue.id, key: issue.key, fields: { status: { name: issue.status } } },
        };
      if (sub === '/transitions' && r.method === 'GET')
        return {
          status: 200,
          body: {
            transitions: available(issue).map((t) => ({ id: t.id, name: t.name, to: { name: t.to } })),
          },
        };
      if (sub === '/transitions' && r.method === 'POST') {
        const t = available(issue).find((x) => x.id === body?.transition?.id);
        if (!t) return bad([`Transition id '${String(body?.transition?.id)}' is not valid for this issue.`]);
        issue.status = t.to;
        issue.transitioned.push(t.id);
        return { status: 204 };
      }
      if (sub === '/comment' && r.method === 'GET') {
        const order = url.searchParams.get('orderBy') ?? 'created';
        const max = Math.min(Number(url.searchParams.get('maxResults') ?? 100), 5000);
        const list = [...issue.comments].sort((a, b) =>
          order === '-created' ? b.created.localeCompare(a.created) : a.created.localeCompare(b.created),
        );
        // Documented: the list carries no properties (expand accepts renderedBody only).
        return {
          status: 200,
          body: {
            startAt: 0,
            maxResults: max,
            total: list.length,
            comments: list.slice(0, max).map((c) => ({ id: c.id, body: c.body, created: c.created })),
          },
        };
      }
      if (sub === '/comment' && r.method === 'POST') {
        const problem = adfProblem(body?.body);
        if (problem) return bad([], { comment: 'Comment body must be an Atlassian Document' });
        const props = body?.properties ?? [];
        if (!Array.isArray(props) || props.some((p: any) => typeof p?.key !== 'string'))
          return bad([], { properties: 'Invalid comment properties.' });
        const comment: FakeComment = {
          id: String(nextCommentId++),
          body: body.body,
          properties: props,
          created: now(),
        };
        issue.comments.push(comment);
        return { status: 201, body: { id: comment.id, body: comment.body, created: comment.created } };
      }
    }
    return { status: 404, body: { errorMessages: ['Not found'], errors: {} } };
  };

  const rec = await startRecorder((r) => {
    const path = r.path.split('?')[0]!;
    const rule = rules.find((x) => (!x.method || x.method === r.method) && (!x.path || x.path.test(path)));
    if (rule) {
      rule.times = (rule.times ?? 1) - 1;
      if (rule.times <= 0) rules.splice(rules.indexOf(rule), 1);
      if (rule.committed) handle(r);
      return {
        status: rule.status,
        headers: rule.retryAfter ? { 'retry-after': rule.retryAfter } : {},
        body: rule.body ?? { errorMessages: ['Service unavailable'], errors: {} },
      };
    }
    const reply = handle(r);
    if (reply.status === 400)
      refusals.push({ path, body: reply.body as JiraFake['refusals'][number]['body'] });
    return reply;
  });

  return {
    ...rec,
    issues,
    issue: (key) => issues.find((i) => i.key === key),
    failNext: (rule) => rules.push({ ...rule }),
    refusals,
  };
}
