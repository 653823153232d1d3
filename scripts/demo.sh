#!/usr/bin/env bash
# Install everything, then run the demo: the private PostGIS, the sample town loaded
# (partitioned and served as those parts land). Extra arguments go to `geogrid demo`.
# Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/geogrid demo "$@"
