/**
 * Slack incoming webhook: a `text` fallback plus one legacy secondary attachment (coloured bar by
 * level, title linking to the run, fields). Shape per Slack's reference, "Secondary message
 * attachments" (api.slack.com/reference/messaging/attachments): `fallback`, `color` (`good`,
 * `warning`, `danger` or a hex code), `title`, `title_link`, `text`, `fields[{title, value,
 * short}]`, `footer`, `ts` (an integer epoch).
 *
 * Slack parses `&`, `<` and `>` as control characters (mentions such as `<!channel>`, links) in
 * every text it shows, so each string taken from the event is HTML-entity escaped for those three
 * characters only, as Slack's formatting reference asks ("Escaping text").
 */
import type { KillSwitchEvent } from '../../../contracts/events';
import type { Formatter } from '../types';
import { EVENT_TITLES, LEVEL_COLORS, eventFacts, levelOf, runLink } from './facts';

/** Escape Slack's three control characters; nothing else is entity-encoded. */
export function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export interface SlackField {
  title: string;
  value: string;
  short: boolean;
}

export interface SlackAttachment {
  fallback: string;
  color: string;
  title: string;
  title_link?: string;
  text: string;
  fields: SlackField[];
  footer: string;
  ts?: number;
}

export interface SlackMessage {
  text: string;
  attachments: SlackAttachment[];
}

export function slackMessage(event: KillSwitchEvent): SlackMessage {
  const title = EVENT_TITLES[event.type];
  const link = runLink(event);
  const at = Date.parse(event.occurredAt);
  const attachment: SlackAttachment = {
    fallback: slackEscape(`${title}: ${event.summary}`),
    color: `#${LEVEL_COLORS[levelOf(event)]}`,
    title: slackEscape(title),
    // A URL field, not text: Slack does not parse it, so it is not entity-escaped.
    ...(link ? { title_link: link } : {}),
    text: slackEscape(event.data.message ? `${event.summary}\n${event.data.message}` : event.summary),
    fields: eventFacts(event).map((f) => ({ title: f.label, value: slackEscape(f.value), short: f.short })),
    footer: slackEscape(`Secret Kill Switch · ${event.type}`),
    ...(Number.isFinite(at) ? { ts: Math.floor(at / 1000) } : {}),
  };
  return { text: slackEscape(`${title}: ${event.summary}`), attachments: [attachment] };
}

export const slack: Formatter = (event) => ({
  contentType: 'application/json',
  body: JSON.stringify(slackMessage(event)),
});
