#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory (docker-entrypoint-initdb.d).
# Two users, each owning only its own databases:
#   temporal    owns temporal and temporal_visibility (Temporal's persistence and visibility)
#   killswitch  owns killswitch (the audit store; the kill switch's migrations run as this user)
set -eu
: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD is required}"
: "${KILLSWITCH_DB_PASSWORD_FILE:?KILLSWITCH_DB_PASSWORD_FILE is required}"
KILLSWITCH_DB_PASSWORD="$(cat "$KILLSWITCH_DB_PASSWORD_FILE")"
[ -n "$KILLSWITCH_DB_PASSWORD" ] || { echo "$KILLSWITCH_DB_PASSWORD_FILE is empty" >&2; exit 1; }

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" \
  -v killswitch_password="$KILLSWITCH_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE ROLE killswitch LOGIN PASSWORD :'killswitch_password';
CREATE DATABASE killswitch OWNER killswitch;
REVOKE ALL ON DATABASE temporal, temporal_visibility, killswitch FROM PUBLIC;
GRANT CONNECT ON DATABASE temporal, temporal_visibility TO temporal;
GRANT CONNECT ON DATABASE killswitch TO killswitch;
SQL
echo "created the users temporal and killswitch and their databases"
