#!/usr/bin/env bash
# Install the vendors' own Python clients (tests/vendor-clients/requirements.txt,
# pinned) into target/vendor-clients-venv, which tests/tests/vendor_*.rs use
# to run those clients against `sluice emulator`. Reinstalls only when the
# requirements file changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/vendor-clients-venv"
req="$root/tests/vendor-clients/requirements.txt"
stamp="$venv/.requirements"
if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
