#!/usr/bin/env bash
# Build Python Sluice plugins into WebAssembly components with componentize-py.
#
#   sdk/python/build.sh                      build the examples and templates into target/polyglot/
#   sdk/python/build.sh DIR KIND OUT.wasm    build one plugin: DIR holds app.py, KIND is
#                                            transform | destination
#
# componentize-py (pinned in requirements.txt) is installed into
# sdk/python/.venv on first use. Set SLUICE_PYTHON to choose the Python 3
# that creates the venv (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${SLUICE_PYTHON:-python3}"

ensure_toolchain() {
    local want have
    want="$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")"
    have="$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}' || true)"
    if [ "$have" = "$want" ]; then
        return
    fi
    echo "sdk/python: installing componentize-py $want into $venv" >&2
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
}

# check_syntax APP_DIR: every .py of the plugin parses (check_syntax.py),
# before anything is installed.
check_syntax() {
    "$python" "$here/check_syntax.py" "$1"
}

# build_one APP_DIR KIND OUT
build_one() {
    local app_dir kind out imports
    app_dir="$(cd "$1" && pwd)"
    kind="$2"
    out="$3"
    case "$kind" in
        transform) imports=() ;;
        destination) imports=(--import-interface-name "wasi:http/types@0.2.12=http_types") ;;
        *)
            echo "unknown plugin kind \`$kind\` (expected transform or destination)" >&2
            exit 2
            ;;
    esac
    if [ ! -f "$app_dir/app.py" ]; then
        echo "$app_dir/app.py not found: a Python plugin's entry module is app.py" >&2
        exit 2
    fi
    check_syntax "$app_dir" || { echo "sdk/python: $app_dir does not parse; nothing was built" >&2; exit 1; }
    ensure_toolchain
    mkdir -p "$(dirname "$out")"
    echo "sdk/python: building $app_dir ($kind) -> $out" >&2
    # Run from an empty directory: componentize-py adds the current
    # directory to the module path. VIRTUAL_ENV is unset so nothing from the
    # toolchain's own venv is bundled.
    local scratch
    scratch="$(mktemp -d)"
    (
        cd "$scratch"
        env -u VIRTUAL_ENV "$venv/bin/componentize-py" --quiet \
            -d "$root/wit" -d "$here/wit" \
            -w "sluice:python-sdk/$kind@0.1.0" \
            --import-interface-name "sluice:plugin/types@0.1.0=types" \
            "${imports[@]}" \
            componentize app -p "$app_dir" -p "$here" -o "$out"
    ) || { rm -rf "$scratch"; echo "sdk/python: building $app_dir failed" >&2; exit 1; }
    rm -rf "$scratch"
}

if [ $# -eq 3 ]; then
    case "$3" in /*) out="$3" ;; *) out="$PWD/$3" ;; esac
    build_one "$1" "$2" "$out"
    exit 0
elif [ $# -ne 0 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi

dest="$root/target/polyglot"
build_one "$here/examples/normalise" transform "$dest/python-normalise.wasm"
build_one "$here/examples/http-post" destination "$dest/python-http-post.wasm"
build_one "$here/examples/field-map" transform "$dest/python-field-map.wasm"
build_one "$here/templates/transform" transform "$dest/templates/python-transform.wasm"
build_one "$here/templates/destination" destination "$dest/templates/python-destination.wasm"
ls -l "$dest"/python-*.wasm "$dest"/templates/python-*.wasm >&2
