#!/bin/sh
# The kill switch's custom search attributes (contracts/run.ts SEARCH_ATTRIBUTE_DEFINITIONS; the
# same list tools/temporal-dev.ts registers on the dev server). Idempotent: an attribute that already
# exists with the same type is fine; one of another type fails the job.
set -eu
NAMESPACE="${KILLSWITCH_NAMESPACE:-default}"
: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"

# The namespace may take a moment to reach every frontend after its creation.
tries=0
until temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "namespace $NAMESPACE not found on $TEMPORAL_ADDRESS after 120 s" >&2; exit 1; fi
  sleep 2
done

register() {
  if out=$(temporal operator search-attribute create --namespace "$NAMESPACE" --name "$1" --type "$2" 2>&1); then
    echo "$out"
    return 0
  fi
  case "$out" in
    *"different type"*) echo "$out" >&2; return 1 ;;
    *"already exists"*) echo "already registered: $1 ($2)"; return 0 ;;
    *) echo "$out" >&2; return 1 ;;
  esac
}

register KillSwitchCredentialType Keyword
register KillSwitchOwningSystem Keyword
register KillSwitchSource Keyword
register KillSwitchOutcome Keyword
register KillSwitchPolicyAction Keyword
echo "search attributes ready"
