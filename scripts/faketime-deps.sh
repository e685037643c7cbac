#!/usr/bin/env bash
# What the skewed-clock worker test (crates/cli/tests/worker_faults.rs)
# needs: Debian's libfaketime, preloaded into `sluice worker` processes to
# move their clocks by minutes. Installed only when the library is missing
# (CI runs as root).
set -euo pipefail

if ! dpkg -L libfaketime 2>/dev/null | grep -q 'libfaketime\.so\.1$'; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends faketime >/dev/null
fi
