#!/usr/bin/env bash
# Build the Python and JavaScript plugins (examples and templates) into
# target/polyglot/*.wasm, installing componentize-py (sdk/python/.venv) and
# componentize-js (sdk/js/node_modules) from PyPI and npm when missing.
# tests/tests/polyglot.rs runs the examples in the real host.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/sdk/python/build.sh"
bash "$root/sdk/js/build.sh"
