/** Application sessions tied to a credential: one adapter per session store or IdP. */
import type { SessionTargetConfig } from '../../lib/systems';
import type { SessionTarget } from '../../lib/systems/provider';
import { ConnectPgSimpleSessionTarget } from './connect-pg-simple';
import { OktaSessionTarget } from './okta';
import { ConnectRedisSessions } from './connect-redis';

export function createSessionTarget(
  config: SessionTargetConfig,
  _env: Readonly<Record<string, string | undefined>>,
): SessionTarget {
  switch (config.kind) {
    case 'connect_redis':
      return new ConnectRedisSessions(config, _env[config.urlEnv]!);
    case 'connect_pg_simple':
      return new ConnectPgSimpleSessionTarget(config, _env[config.urlEnv]!);
    case 'okta':
      return new OktaSessionTarget(config, _env[config.tokenEnv]!);
  }
}
