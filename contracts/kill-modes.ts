/**
 * How a rotation kills a credential: `emergency` revokes at once, `graceful` issues the replacement
 * first and revokes after an overlap (a durable timer). Quarantine is a policy of its own.
 */
import { z } from 'zod';

export const killModeSchema = z.enum(['emergency', 'graceful']);
export type KillMode = z.infer<typeof killModeSchema>;
