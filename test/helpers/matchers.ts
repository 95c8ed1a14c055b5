/** Shapes of values a test knows the form of but not the exact value (times, generated ids). */

/** A timestamp as `Date.prototype.toISOString()` writes it, e.g. 2026-01-31T12:00:00.000Z. */
export const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A UUID (Temporal run ids), lower-case hex. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
