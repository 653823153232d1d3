#!/usr/bin/env bash
# Install everything, then run the whole test suite: lint, types, tests against a real
# PostGIS cluster that the suite starts (and stops) itself. Extra arguments go to pytest.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export GEOGRID_TEST_TMP=${GEOGRID_TEST_TMP:-/tmp}
# screenshots of the page tests (desktop, tablet, phone): kept as CI artefacts
if [ -z "${GEOGRID_ARTIFACTS:-}" ]; then
    export GEOGRID_ARTIFACTS=$PWD/artifacts
    rm -rf "$GEOGRID_ARTIFACTS"  # only our own default folder is cleared
fi
export GEOGRID_SCREENSHOTS=${GEOGRID_SCREENSHOTS:-$GEOGRID_ARTIFACTS/screenshots}
mkdir -p "$GEOGRID_ARTIFACTS"
cleanup() {
    # a cluster left behind by an interrupted run: stop it
    for pid in "$GEOGRID_TEST_TMP"/geogrid-*/pgdata/postmaster.pid; do
        [ -f "$pid" ] && kill "$(head -n 1 "$pid")" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "== ruff"
.venv/bin/ruff check geogrid partition tiles api tests bench
.venv/bin/ruff format --check geogrid partition tiles api tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# one worker per core (each with its own private cluster), whole files per worker so that a
# file's fixtures are built once; GEOGRID_TEST_WORKERS=0 runs everything in this process
WORKERS=${GEOGRID_TEST_WORKERS:-$(nproc)}
set +e
.venv/bin/pytest -p no:cacheprovider -n "$WORKERS" --dist loadfile "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi
exit "$rc"
