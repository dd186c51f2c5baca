#!/usr/bin/env bash
# Install the pinned n8n for the end-to-end tests into a cache keyed by the lockfile's hash:
# ${WA_AUTH_N8N_CACHE:-$HOME/.cache/wa-auth-n8n}/<first 16 hex digits of sha256(package-lock.json)>.
# A second run (same lockfile) does nothing. Prints the n8n binary's path on the last line;
# tests/test_cli_n8n.py looks in the same place.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HASH="$(sha256sum "$HERE/package-lock.json" | cut -c1-16)"
exec bash "$HERE/install.sh" "${WA_AUTH_N8N_CACHE:-$HOME/.cache/wa-auth-n8n}/$HASH"
