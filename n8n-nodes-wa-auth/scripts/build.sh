#!/usr/bin/env bash
# Build n8n-nodes-wa-auth into an npm tarball (what n8n installs), on a clean machine, cached.
#
# Usage: scripts/build.sh [--lint] [--test]
#   --lint  also run `n8n-node lint` (n8n's community-node rules) on the sources
#   --test  also run the unit tests (node:test, compiled with tsconfig.test.json)
#
# The dev dependencies (n8n's node CLI, TypeScript, n8n-workflow; the package has no runtime
# dependency) are installed once with `npm ci --ignore-scripts` into a cache keyed by the
# lockfile's hash: ${WA_AUTH_N8N_CACHE:-$HOME/.cache/wa-auth-n8n}/package-<16 hex digits>.
# The sources are copied into a scratch folder and built there (`n8n-node build`, then
# `npm pack`), so the checkout is never written to; the tarball is cached by the sources' hash
# (build-<16 hex digits>/). The last line printed is the tarball's path. Needs Node >= 20.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WA_AUTH_N8N_CACHE:-$HOME/.cache/wa-auth-n8n}"
LINT=0 TEST=0
for arg in "$@"; do
  case "$arg" in
    --lint) LINT=1 ;;
    --test) TEST=1 ;;
    *) echo "usage: build.sh [--lint] [--test]" >&2; exit 2 ;;
  esac
done
log() { echo "[n8n-nodes-wa-auth] $*" >&2; }

DEPS="$CACHE/package-$(sha256sum "$HERE/package-lock.json" | cut -c1-16)"
LOCK_SUM="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$DEPS/.install-stamp" || "$(cat "$DEPS/.install-stamp")" != "$LOCK_SUM" ]]; then
  log "installing the dev dependencies into $DEPS (npm ci)"
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS/"
  (cd "$DEPS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  echo "$LOCK_SUM" > "$DEPS/.install-stamp"
fi

PACKAGE=(package.json package-lock.json tsconfig.json tsconfig.test.json eslint.config.mjs
         .prettierrc.js README.md LICENSE.md credentials nodes)
SRC_SUM="$(cd "$HERE" && find "${PACKAGE[@]}" test -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
OUT="$CACHE/build-$SRC_SUM"
WORK="$(mktemp -d -t n8n-nodes-wa-auth.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# The tests are copied after the lint: n8n's strict rules (no node: imports) are the package's.
(cd "$HERE" && cp -r "${PACKAGE[@]}" "$WORK/")
ln -s "$DEPS/node_modules" "$WORK/node_modules"
cd "$WORK"
if [[ "$LINT" == 1 ]]; then
  log "n8n-node lint"
  node_modules/.bin/n8n-node lint >&2
fi
if [[ "$TEST" == 1 ]]; then
  log "unit tests"
  cp -r "$HERE/test" "$WORK/"
  node_modules/.bin/tsc -p tsconfig.test.json >&2
  node --test --test-reporter=spec test-build/test/*.test.js >&2
fi
TARBALL="$OUT/n8n-nodes-wa-auth-$(node -p 'require("./package.json").version').tgz"
if [[ ! -f "$TARBALL" ]]; then
  log "n8n-node build"
  node_modules/.bin/n8n-node build </dev/null >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }
  mkdir -p "$OUT.tmp"
  npm pack --silent --pack-destination "$OUT.tmp" >&2
  rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
fi
echo "$TARBALL"
