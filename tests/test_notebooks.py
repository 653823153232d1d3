"""Every notebook in ``notebooks/`` runs top to bottom against its own loaded database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pages_support import seed_overlays

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture
def notebook_db(pg, _town_template: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh copy of the sample town plus an active plan, cases and staff."""
    name = pg.create_database(template=_town_template)
    try:
        url = pg.url(name)
        seed_overlays(url)
        yield url
    finally:
        pg.drop_database(name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path, notebook_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("GEOGRID_DATABASE_URL", notebook_db)
    monkeypatch.setenv("GEOGRID_HOME", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]  # fmt: skip
    assert errors == []
