/** The provider contract lives with the system kinds (lib/systems/provider.ts); re-exported for the activities. */
export type * from '../../lib/systems/provider';
