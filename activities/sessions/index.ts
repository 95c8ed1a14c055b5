/** Application sessions tied to a credential: one adapter per session store or IdP. */
import type { SessionTargetConfig } from '../../lib/systems';
import type { SessionTarget } from '../providers/types';

export function createSessionTarget(config: SessionTargetConfig, _env: Readonly<Record<string, string | undefined>>): SessionTarget {
  switch (config.kind) {
    case 'connect_redis':
    case 'connect_pg_simple':
    case 'okta':
      throw new Error(`${config.kind} session target: not built yet`);
  }
}
