#!/usr/bin/env bash
# The browser client's end-to-end suite: the real server binary (web/ embedded, as it ships) on
# scratch data directories, driven in headless Debian Chromium by playwright-core.
#
#   bash tests/browser/run.sh                 # every *.test.js here
#   bash tests/browser/run.sh chat.test.js    # one file
#
# Installs playwright-core into tests/browser/node_modules when missing (no browser download:
# it drives /usr/bin/chromium). Needs the server binary: CHATGROUP_BIN, default
# target/debug/chatgroup (cargo build --bin chatgroup).
#
# Output (screenshots, perf.json) goes to tests/browser/out/ (git-ignored).
# UPDATE_SCREENSHOTS=1 also copies the two screenshots to docs/img/ for the README.
# CHATGROUP_BROWSER_WEB_DIR=web serves the page from disk instead (for editing without a rebuild).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

command -v node >/dev/null 2>&1 || {
    echo "node not found: the browser tests need Node.js 20+ with npm" >&2
    exit 1
}

# npm writes node_modules/.package-lock.json on every install; newer than the lock file means
# the tree is what the lock file asks for.
stamp=node_modules/.package-lock.json
if [[ ! -d node_modules/playwright-core || ! -f "$stamp" || package-lock.json -nt "$stamp" ]]; then
    echo "browser tests: installing playwright-core into tests/browser/node_modules"
    npm ci --no-audit --no-fund --loglevel=error
fi

export CHROME_BIN="${CHROME_BIN:-/usr/bin/chromium}"
if [[ ! -x "$CHROME_BIN" ]]; then
    echo "no Chromium at $CHROME_BIN: apt-get install chromium (or set CHROME_BIN)" >&2
    exit 1
fi

export CHATGROUP_BIN="${CHATGROUP_BIN:-$ROOT/target/debug/chatgroup}"
if [[ ! -x "$CHATGROUP_BIN" ]]; then
    echo "no server binary at $CHATGROUP_BIN: cargo build --bin chatgroup first (or set CHATGROUP_BIN)" >&2
    exit 1
fi

if (($# == 0)); then
    set -- ./*.test.js
fi
# One file at a time: each starts its own server and browser, and this machine has 2 cores.
# Every wait inside is bounded; the timeout only catches a hang the waits do not.
exec node --test --test-concurrency=1 --test-timeout=180000 "$@"
