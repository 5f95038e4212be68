#!/usr/bin/env bash
# Browser tests of the web UI: installs what is missing (Debian's chromium,
# playwright-core from package-lock.json), builds the airlock binary, runs the
# tests against it. Exits non-zero when anything fails.
#
# Environment: CARGO_TARGET_DIR (where cargo builds), CHROMIUM (browser binary,
# default /usr/bin/chromium), ARTIFACTS_DIR (screenshots and server log,
# default tests/ui/artifacts).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
  echo "ui: installing Debian's chromium" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "ui: node and npm are required (apt-get install nodejs npm)" >&2
  exit 1
fi

cd "$here"
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
  echo "ui: installing playwright-core and axe-core (no browser download)" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

echo "ui: building the airlock binary" >&2
(cd "$root" && cargo build -p airlock --bin airlock --quiet)
target="${CARGO_TARGET_DIR:-$root/target}"
export AIRLOCK_BIN="$target/debug/airlock"

node --test --test-concurrency=1 --test-reporter=spec ui.test.mjs walkthrough.test.mjs
