#!/usr/bin/env bash
# Fetch the JavaScript the built pages need from the npm registry into book/_widgets_js/, so the
# book works offline (see tools/book_extras.py):
#   widgets/  @jupyter-widgets/html-manager's embed-amd.js (+ its icon fonts) and RequireJS,
#   mathjax/  MathJax 3 (tex-mml-chtml.js, its fonts and lazily loaded components).
# Idempotent: does nothing when the pinned versions are already there. Without npm it warns and
# exits 0: the book then keeps the CDN defaults of myst-nb and Sphinx.
set -euo pipefail

HTML_MANAGER_VERSION="${HTML_MANAGER_VERSION:-1.0.14}"   # ipywidgets 8.1 wants ^1.0.1
REQUIREJS_VERSION="${REQUIREJS_VERSION:-2.3.7}"
MATHJAX_VERSION="${MATHJAX_VERSION:-3.2.2}"       # Sphinx 7 uses MathJax 3
NPM="${NPM:-npm}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$here/book/_widgets_js"
dest="$vendor/widgets"
mathjax="$vendor/mathjax"
stamp="$vendor/.versions"
want="html-manager@$HTML_MANAGER_VERSION requirejs@$REQUIREJS_VERSION mathjax@$MATHJAX_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dest/embed-amd.js" && -f "$dest/require.js" \
      && -f "$mathjax/tex-mml-chtml.js" ]]; then
    exit 0
fi
if ! command -v "$NPM" >/dev/null 2>&1; then
    echo "WARNING: npm not found: widget JavaScript will load from the CDN (widgets need a network)." >&2
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "Fetching $want from npm"
if ! (cd "$tmp" && "$NPM" pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
        "requirejs@$REQUIREJS_VERSION" "mathjax@$MATHJAX_VERSION" >/dev/null 2>npm.log); then
    cat "$tmp/npm.log" >&2 || true
    echo "WARNING: npm pack failed: widget JavaScript will load from the CDN." >&2
    exit 0
fi
mkdir -p "$tmp/hm" "$tmp/rq" "$tmp/mj"
tar -xzf "$tmp"/jupyter-widgets-html-manager-*.tgz -C "$tmp/hm"
tar -xzf "$tmp"/requirejs-*.tgz -C "$tmp/rq"
tar -xzf "$tmp"/mathjax-*.tgz -C "$tmp/mj"

rm -rf "$vendor"
mkdir -p "$dest" "$mathjax/output"
cp "$tmp/hm/package/dist/embed-amd.js" "$dest/"
# Font Awesome files that embed-amd.js's CSS refers to by relative URL.
find "$tmp/hm/package/dist" -maxdepth 1 -type f \
    \( -name '*.woff2' -o -name '*.woff' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
    -exec cp {} "$dest/" \;
cp "$tmp/rq/package/require.js" "$dest/"
cp "$tmp/hm/package/LICENSE"* "$dest/LICENSE.html-manager" 2>/dev/null || true
es5="$tmp/mj/package/es5"
cp "$es5/tex-mml-chtml.js" "$mathjax/"
cp -r "$es5/input" "$es5/ui" "$es5/a11y" "$es5/adaptors" "$mathjax/"
cp -r "$es5/output/chtml" "$es5/output/chtml.js" "$mathjax/output/"
cp "$tmp/mj/package/LICENSE" "$mathjax/LICENSE" 2>/dev/null || true
echo "$want" > "$stamp"
echo "Vendored JavaScript in $vendor"
