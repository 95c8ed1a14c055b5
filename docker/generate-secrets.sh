#!/bin/sh
# Writes the secrets docker-compose.yml reads, without overwriting any that exist:
#   ./secrets/<name>   one file per kill switch secret (mounted at /run/secrets/<name>, read through <VAR>_FILE)
#   ./.env             POSTGRES_PASSWORD and TEMPORAL_DB_PASSWORD (the superuser's and Temporal's database passwords)
# The optional ones (Slack, PagerDuty, API tokens) are created empty: an empty file is an unset variable.
# ./secrets is mode 0700; the files are 0644 so the containers' non-root users can read their bind mounts.
set -eu
cd "$(dirname "$0")/.."
umask 022
mkdir -p secrets
chmod 700 secrets
[ -f secrets/.gitignore ] || printf '*\n' > secrets/.gitignore

rand_b64() { openssl rand -base64 "$1" | tr -d '\n'; }
rand_hex() { openssl rand -hex "$1"; }
put() { # put NAME VALUE: only when the file does not exist yet
  if [ -e "secrets/$1" ]; then echo "kept    secrets/$1"; else printf '%s\n' "$2" > "secrets/$1"; echo "created secrets/$1"; fi
}

# URL-safe (hex): it also sits inside database_url.
put killswitch_db_password "$(rand_hex 24)"
put database_url "postgres://killswitch:$(cat secrets/killswitch_db_password)@postgres:5432/killswitch"
put server_key "$(rand_b64 32)"
put codec_keys "k1:$(rand_b64 32)"
put webhook_secrets "whsec_$(rand_b64 24)"
put codec_tokens "$(rand_hex 24)"
put metrics_token "$(rand_hex 24)"
put api_tokens ""
put slack_bot_token ""
put slack_signing_secret ""
put pagerduty_routing_key ""
[ -e secrets/worker.env ] || printf '# The owned systems admin connection strings (inventory adminUrlEnv), e.g.\n# APP_DB_ADMIN_URL=postgres://killswitch_admin:...@db.internal:5432/postgres\n' > secrets/worker.env

touch .env
for var in POSTGRES_PASSWORD TEMPORAL_DB_PASSWORD; do
  if grep -q "^$var=" .env; then echo "kept    $var in .env"; else echo "$var=$(rand_hex 24)" >> .env; echo "added   $var to .env"; fi
done
chmod 600 .env
