"""Where the web assets (Leaflet and friends, installed by ``npm ci``) live.

Used by the map pages (:mod:`tiles.pages`), the offline map export (:mod:`geogrid.mapexport`)
and the partitioner's HTML report.
"""

from __future__ import annotations

from pathlib import Path

from geogrid.errors import ConfigurationError

__all__ = ["find_node_modules"]


def find_node_modules(explicit: Path | str | None = None) -> Path:
    """The ``node_modules`` folder holding Leaflet.

    Looked up in order: ``explicit`` (``--node-modules``, or ``Settings.node_modules`` from
    ``GEOGRID_NODE_MODULES``), the folder next to the geogrid sources (a checkout or an
    editable install), the current directory.

    Raises
    ------
    ConfigurationError
        When no candidate holds Leaflet, with the command that installs the assets.
    """
    candidates = [Path(explicit)] if explicit else []
    candidates += [
        Path(__file__).resolve().parents[1] / "node_modules",
        Path.cwd() / "node_modules",
    ]
    for cand in candidates:
        if (cand / "leaflet" / "dist" / "leaflet.js").is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigurationError(
        f"web assets (Leaflet etc.) are not installed; looked in {tried}. "
        "Run `bash scripts/setup.sh` (or `npm ci` in the geogrid folder), "
        "or set GEOGRID_NODE_MODULES to the folder holding them."
    )
