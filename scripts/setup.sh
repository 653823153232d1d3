#!/usr/bin/env bash
# Install everything geogrid needs on a Debian machine; safe and fast to re-run.
#   - Debian packages: PostgreSQL server + PostGIS (+ python3-venv when missing)
#   - .venv with geogrid and its pinned dependencies (scripts/requirements.lock)
#   - web assets from the npm registry, when the project has a package.json
# Usage: bash scripts/setup.sh            (as root, or a user with sudo)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

need=()
missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# PostgreSQL server and the matching PostGIS.
if missing postgresql; then need+=(postgresql); fi
PGVER=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
if [ -z "$PGVER" ]; then
    [ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -c Packages || true)" ] || $SUDO apt-get update -qq
    PGVER=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)
    [ -n "$PGVER" ] || { $SUDO apt-get update -qq; PGVER=$(apt-cache depends postgresql | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1); }
fi
if missing "postgresql-${PGVER}-postgis-3"; then need+=("postgresql-${PGVER}-postgis-3"); fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then need+=(python3-venv); fi
# procps (ps: the cluster tests), Pango for WeasyPrint's PDFs, Noto CJK so that printed
# Chinese and page screenshots have real glyphs (embedded in PDFs, never fetched online).
for pkg in procps libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk; do
    if missing "$pkg"; then need+=("$pkg"); fi
done
# Headless Chromium for the map-page tests, Node/npm for web assets.
for pkg in ${GEOGRID_EXTRA_DEBS:-chromium}; do
    if missing "$pkg"; then need+=("$pkg"); fi
done
if [ -f package.json ] && ! command -v npm >/dev/null 2>&1; then need+=(npm); fi

if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's postgresql package starts a system cluster on 5432; geogrid does not need it.

# Python virtual environment, re-installed only when the dependency pins change.
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { echo "setup: geogrid needs Python 3.11 or newer" >&2; exit 1; }
STAMP=.venv/.geogrid-installed
WANT=$(cat pyproject.toml scripts/requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "setup: installing Python packages into .venv"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -c scripts/requirements.lock -e ".[dev]"
    echo "$WANT" > "$STAMP"
fi

# ogctests (the OGC API conformance suite run by tests/test_ogc_clients.py) pins httpx<0.28,
# pytest<9 and pyarrow<18, which .venv cannot hold: it gets a venv of its own.
OGCTESTS=0.1.15
if ! .venv-ogctests/bin/python -c "import importlib.metadata as m; assert m.version('ogctests') == '$OGCTESTS'" 2>/dev/null; then
    echo "setup: installing ogctests $OGCTESTS into .venv-ogctests"
    [ -x .venv-ogctests/bin/python ] || "$PY" -m venv .venv-ogctests
    .venv-ogctests/bin/python -m pip install -q "ogctests==$OGCTESTS"
fi
# Its bugs that fail against any server, patched (each named in the patch file's header);
# applied once: a patch that applies in reverse is in place already.
OGCSITE=$(.venv-ogctests/bin/python -c "import ogctests, os; print(os.path.relpath(os.path.dirname(os.path.dirname(ogctests.__file__))))")
for fix in scripts/patches/ogctests-"$OGCTESTS"-*.patch; do
    if ! git apply -p1 --directory="$OGCSITE" -R --check "$fix" 2>/dev/null; then
        echo "setup: patching ogctests: $fix"
        git apply -p1 --directory="$OGCSITE" "$fix"
    fi
done

# Web assets (Leaflet and plugins) from the npm registry, served by geogrid itself.
if [ -f package.json ]; then
    LOCKSUM=$( (cat package.json; cat package-lock.json 2>/dev/null) | sha256sum | cut -d' ' -f1)
    if [ ! -d node_modules ] || [ "$(cat node_modules/.geogrid-installed 2>/dev/null)" != "$LOCKSUM" ]; then
        echo "setup: installing web assets with npm"
        # --ignore-scripts: no package needs a build step, and swagger-ui-dist's @scarf/scarf
        # postinstall would try to phone home from an intranet machine.
        NPMFLAGS="--silent --no-audit --no-fund --ignore-scripts"
        if [ -f package-lock.json ]; then npm ci $NPMFLAGS; else npm install $NPMFLAGS; fi
        echo "$LOCKSUM" > node_modules/.geogrid-installed
    fi
fi
echo "setup: ready (PostgreSQL ${PGVER} + PostGIS, .venv)"
