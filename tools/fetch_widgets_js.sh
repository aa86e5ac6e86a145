#!/usr/bin/env bash
# Fetch the ipywidgets embedding JavaScript from the npm registry into book/_widgets_js/widgets/
# so the built book renders widgets offline (see tools/widgets_js.py). Idempotent: does nothing
# when the files for the pinned versions are already there. Without npm it warns and exits 0:
# the book then keeps myst-nb's CDN defaults.
set -euo pipefail

HTML_MANAGER_VERSION="${HTML_MANAGER_VERSION:-1.0.14}"   # ipywidgets 8.1 wants ^1.0.1
REQUIREJS_VERSION="${REQUIREJS_VERSION:-2.3.7}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$here/book/_widgets_js/widgets"
stamp="$dest/.versions"
want="html-manager@$HTML_MANAGER_VERSION requirejs@$REQUIREJS_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dest/embed-amd.js" && -f "$dest/require.js" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "WARNING: npm not found: widget JavaScript will load from the CDN (widgets need a network)." >&2
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "Fetching @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION and requirejs@$REQUIREJS_VERSION from npm"
if ! (cd "$tmp" && npm pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
        "requirejs@$REQUIREJS_VERSION" >/dev/null 2>npm.log); then
    cat "$tmp/npm.log" >&2 || true
    echo "WARNING: npm pack failed: widget JavaScript will load from the CDN." >&2
    exit 0
fi
mkdir -p "$tmp/hm" "$tmp/rq"
tar -xzf "$tmp"/jupyter-widgets-html-manager-*.tgz -C "$tmp/hm"
tar -xzf "$tmp"/requirejs-*.tgz -C "$tmp/rq"

rm -rf "$dest"
mkdir -p "$dest"
cp "$tmp/hm/package/dist/embed-amd.js" "$dest/"
# Font Awesome files that embed-amd.js's CSS refers to by relative URL.
find "$tmp/hm/package/dist" -maxdepth 1 -type f \
    \( -name '*.woff2' -o -name '*.woff' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
    -exec cp {} "$dest/" \;
cp "$tmp/rq/package/require.js" "$dest/"
cp "$tmp/hm/package/LICENSE"* "$dest/LICENSE.html-manager" 2>/dev/null || true
echo "$want" > "$stamp"
echo "Widget JavaScript in $dest"
