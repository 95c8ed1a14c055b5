/** The HTTP-delivered formats, by subscription format. Transports (syslog, email, jira) live elsewhere. */
import type { EventFormat } from '../../../contracts/events';
import type { Formatter } from '../types';
import { cef } from './cef';
import { slack } from './slack';
import { splunkHec } from './splunk';
import { teams, teamsAdaptive } from './teams';

export const FORMATTERS: Partial<Record<EventFormat, Formatter>> = {
  // json: the signed JSON envelope formatter is registered here by the lead.
  slack,
  teams,
  teams_adaptive: teamsAdaptive,
  cef,
  splunk_hec: splunkHec,
};
