#!/bin/sh
# The Temporal schemas on PostgreSQL, as Temporal's self-hosting compose sets them up
# (samples-server compose/scripts/setup-postgres.sh), run as the `temporal` user. The databases
# themselves were created, owned by that user, by docker/postgres/10-users.sh; setup-schema and
# update-schema are idempotent, so this runs on every `docker compose up`.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_PWD:?POSTGRES_PWD is required}"
export SQL_PASSWORD="$POSTGRES_PWD"
PORT="${DB_PORT:-5432}"

echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$PORT"
nc -z -w 10 "$POSTGRES_SEEDS" "$PORT"

for db in temporal temporal_visibility; do
  case "$db" in
    temporal) dir=/etc/temporal/schema/postgresql/v12/temporal/versioned ;;
    temporal_visibility) dir=/etc/temporal/schema/postgresql/v12/visibility/versioned ;;
  esac
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$PORT" --db "$db" setup-schema -v 0.0
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$PORT" --db "$db" update-schema -d "$dir"
done
echo "Temporal schemas ready"
