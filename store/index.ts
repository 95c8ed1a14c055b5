/**
 * The store: every SQL statement on the kill switch's own tables (killswitch_*), as typed functions
 * taking the database (lib/db.ts), one file per table family. Routes and activities call these;
 * no query string lives anywhere else (migrations/ create the tables). Imports contracts/ and lib/
 * only.
 */
export * from './admin-audit';
export * from './audit';
export * from './breaker';
export * from './deliveries';
export * from './digest';
export * from './dry-run';
export * from './evidence';
export * from './notifications';
export * from './sightings';
export * from './subscriptions';
export * from './sweeper';
