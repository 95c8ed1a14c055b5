#!/bin/sh
# The kill switch's namespace (after samples-server compose/scripts/create-namespace.sh). Idempotent.
set -eu
NAMESPACE="${KILLSWITCH_NAMESPACE:-default}"
RETENTION="${KILLSWITCH_RETENTION:-720h}"
: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"

tries=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "Temporal at $TEMPORAL_ADDRESS not healthy after 120 s" >&2; exit 1; fi
  sleep 2
done

if temporal operator namespace describe --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE already exists"
  exit 0
fi
temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" --address "$TEMPORAL_ADDRESS"
echo "namespace $NAMESPACE created"
