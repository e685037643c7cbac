#!/usr/bin/env bash
# Build JavaScript Sluice plugins into WebAssembly components with componentize-js.
#
#   sdk/js/build.sh                          build the examples and templates into target/polyglot/
#   sdk/js/build.sh SOURCE.js KIND OUT.wasm  build one plugin; KIND is transform | destination
#
# The toolchain (pinned in package.json and package-lock.json) is installed
# into sdk/js/node_modules with `npm ci` on first use.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

ensure_toolchain() {
    local want have
    want="$(node -p "require('$here/package-lock.json').packages['node_modules/@bytecodealliance/componentize-js'].version")"
    have="$(node -p "try { require('$here/node_modules/@bytecodealliance/componentize-js/package.json').version } catch { '' }")"
    if [ "$have" != "$want" ]; then
        echo "sdk/js: installing componentize-js $want into $here/node_modules" >&2
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

build_one() {
    # A syntax error is reported as FILE:LINE:COLUMN and the parser's
    # message (componentize-js says only that parsing failed), before
    # anything is installed.
    node "$here/check.mjs" "$1" || { echo "sdk/js: $1 does not parse; nothing was built" >&2; exit 1; }
    ensure_toolchain
    node "$here/build.mjs" "$1" "$2" "$3" "$root/wit"
}

if [ $# -eq 3 ]; then
    build_one "$1" "$2" "$3"
    exit 0
elif [ $# -ne 0 ]; then
    sed -n '2,7p' "$0" >&2
    exit 2
fi

dest="$root/target/polyglot"
build_one "$here/examples/normalise/plugin.js" transform "$dest/js-normalise.wasm"
build_one "$here/examples/http-post/plugin.js" destination "$dest/js-http-post.wasm"
build_one "$here/examples/field-map/plugin.js" transform "$dest/js-field-map.wasm"
build_one "$here/templates/transform/plugin.js" transform "$dest/templates/js-transform.wasm"
build_one "$here/templates/destination/plugin.js" destination "$dest/templates/js-destination.wasm"
ls -l "$dest"/js-*.wasm "$dest"/templates/js-*.wasm >&2
