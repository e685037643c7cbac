#!/usr/bin/env bash
# What the console's browser test (tests/tests/console.rs) needs: Debian's
# Chromium (installed only when /usr/bin/chromium is missing; CI runs as
# root) and playwright-core, pinned in tests/console/package-lock.json.
# playwright-core downloads no browser: the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

(cd tests/console && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
