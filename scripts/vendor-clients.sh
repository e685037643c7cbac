#!/usr/bin/env bash
# Install the vendors' own Python tools, pinned, each into its own venv
# under target/: the clients (tests/vendor-clients/requirements.txt:
# simple-salesforce, hubspot-api-client, google-cloud-bigquery,
# databricks-sdk) into target/vendor-clients-venv,
# which tests/tests/vendor_*.rs run against `sluice emulator`, and dbt
# (tests/dbt/requirements.txt) into target/dbt-venv, which tests/tests/dbt.rs
# uses. A venv is reinstalled only when its requirements file changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

install() { # REQUIREMENTS VENV
    local req="$root/$1" venv="$root/$2"
    local stamp="$venv/.requirements"
    if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
        return
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
}

install tests/vendor-clients/requirements.txt target/vendor-clients-venv
install tests/dbt/requirements.txt target/dbt-venv
