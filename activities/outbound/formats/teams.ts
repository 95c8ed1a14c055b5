/**
 * Microsoft Teams, two payloads:
 *
 * - `teams`: the legacy Office 365 / Microsoft 365 connector card (`MessageCard`, the "Legacy
 *   actionable message card reference"): `@type`, `@context` https://schema.org/extensions,
 *   `summary`, `themeColor` (hex, no `#`), `title`, `sections[{activityTitle, activitySubtitle,
 *   facts[{name, value}]}]`, `potentialAction[{@type: OpenUri, name, targets[{os, uri}]}]`.
 *   `options.card: 'adaptive'` sends the Workflows payload below instead.
 * - `teams_adaptive`: what a Teams Workflows "When a Teams webhook request is received" flow (the
 *   connectors' replacement, which takes Adaptive Cards only) expects: `{type: 'message',
 *   attachments[{contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null,
 *   content: <AdaptiveCard>}]}`, the card with `type`, `version` (required), `body` (TextBlock,
 *   FactSet of `{title, value}`) and `actions` (Action.OpenUrl with `url`).
 *
 * Both cards render their text as Markdown, so Markdown's punctuation in a string taken from the
 * event is backslash-escaped (a file named `[x](https://evil)` stays text, not a link).
 */
import type { EventLevel, KillSwitchEvent } from '../../../contracts/events';
import type { Formatter } from '../types';
import { EVENT_TITLES, LEVEL_COLORS, eventFacts, levelOf, runLink } from './facts';

/** Backslash-escape the Markdown characters that could format text or build a link. */
export function teamsEscape(s: string): string {
  return s.replace(/[\\`*_~[\]#<>]/g, '\\$&');
}

export const MESSAGE_CARD_CONTEXT = 'https://schema.org/extensions';
export const ADAPTIVE_CARD_CONTENT_TYPE = 'application/vnd.microsoft.card.adaptive';
export const ADAPTIVE_CARD_SCHEMA = 'http://adaptivecards.io/schemas/adaptive-card.json';
/** Teams renders Adaptive Cards up to 1.5 (desktop and web); 1.4 is what every client shows. */
export const ADAPTIVE_CARD_VERSION = '1.4';
const OPEN_RUN = 'Open the run';

export function messageCard(event: KillSwitchEvent): Record<string, unknown> {
  const title = EVENT_TITLES[event.type];
  const link = runLink(event);
  return {
    '@type': 'MessageCard',
    '@context': MESSAGE_CARD_CONTEXT,
    // Plain text (notification and list previews), not Markdown.
    summary: `${title}: ${event.summary}`,
    themeColor: LEVEL_COLORS[levelOf(event)],
    title: teamsEscape(title),
    sections: [
      {
        activityTitle: teamsEscape(event.summary),
        activitySubtitle: teamsEscape(`Secret Kill Switch · ${event.type}`),
        ...(event.data.message ? { text: teamsEscape(event.data.message) } : {}),
        facts: eventFacts(event).map((f) => ({ name: f.label, value: teamsEscape(f.value) })),
      },
    ],
    ...(link
      ? { potentialAction: [{ '@type': 'OpenUri', name: OPEN_RUN, targets: [{ os: 'default', uri: link }] }] }
      : {}),
  };
}

/** Adaptive Card TextBlock colours for the title. */
const TEXT_COLORS: Record<EventLevel, string> = {
  failure: 'Attention',
  warning: 'Warning',
  success: 'Good',
  info: 'Accent',
};

export function adaptiveCard(event: KillSwitchEvent): Record<string, unknown> {
  const link = runLink(event);
  const body: Record<string, unknown>[] = [
    {
      type: 'TextBlock',
      text: teamsEscape(EVENT_TITLES[event.type]),
      size: 'Medium',
      weight: 'Bolder',
      color: TEXT_COLORS[levelOf(event)],
      wrap: true,
    },
    { type: 'TextBlock', text: teamsEscape(event.summary), wrap: true },
  ];
  if (event.data.message) body.push({ type: 'TextBlock', text: teamsEscape(event.data.message), wrap: true });
  const facts = eventFacts(event).map((f) => ({ title: f.label, value: teamsEscape(f.value) }));
  if (facts.length) body.push({ type: 'FactSet', facts });
  return {
    $schema: ADAPTIVE_CARD_SCHEMA,
    type: 'AdaptiveCard',
    version: ADAPTIVE_CARD_VERSION,
    body,
    ...(link ? { actions: [{ type: 'Action.OpenUrl', title: OPEN_RUN, url: link }] } : {}),
  };
}

export function adaptiveMessage(event: KillSwitchEvent): Record<string, unknown> {
  return {
    type: 'message',
    attachments: [
      { contentType: ADAPTIVE_CARD_CONTENT_TYPE, contentUrl: null, content: adaptiveCard(event) },
    ],
  };
}

export const teamsAdaptive: Formatter = (event) => ({
  contentType: 'application/json',
  body: JSON.stringify(adaptiveMessage(event)),
});

export const teams: Formatter = (event, sub) =>
  sub.options.card === 'adaptive'
    ? teamsAdaptive(event, sub)
    : { contentType: 'application/json', body: JSON.stringify(messageCard(event)) };
