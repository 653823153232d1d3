"""Large registers are validated in two processes; the result must not change."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine

import geogrid.ingest.load as load
from tests.test_ingest_load import register_frame


def test_parallel_prepare_equals_serial(
    town_db: Engine,
    sample_town,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = register_frame(sample_town.households_utf8_csv)
    # a duplicate across the two halves must still be found
    raw = pd.concat([raw, raw.iloc[[5]].assign(source_row=len(raw) + 2)], ignore_index=True)
    with town_db.connect() as conn:
        villages = load.load_villages(conn)
    serial = load.prepare_parallel(raw, villages, jobs=1)
    monkeypatch.setattr(load, "PARALLEL_ROWS", 10)
    parallel = load.prepare_parallel(raw, villages, jobs=2)
    pd.testing.assert_frame_equal(serial[0], parallel[0])
    pd.testing.assert_frame_equal(
        serial[1].sort_values("source_row"), parallel[1].sort_values("source_row")
    )
    assert serial[1]["reason"].str.startswith("duplicate in file").sum() == 1


def test_forked_copy_serialisation_loads_every_row(
    town_db: Engine,
    sample_town,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "_COPY_CHUNK", 997)  # ~10 chunks through the process pool
    raw = register_frame(sample_town.households_utf8_csv)
    report, _ = load.import_frame(town_db, raw)
    assert report.inserted == report.read - report.rejected
    monkeypatch.setattr(load, "_COPY_CHUNK", 100_000)
    again, _ = load.import_frame(town_db, raw)
    assert again.unchanged == report.inserted  # same rows, same hashes, either path
