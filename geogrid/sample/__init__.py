"""Deterministic sample data: a fictional township (or county) with every input file.

>>> from geogrid.sample import generate_town
>>> callable(generate_town)
True

See :func:`generate_town` for the file contract. The generator uses only the explicit
:class:`numpy.random.Generator` built from the seed; the same seed gives byte-identical
files.
"""

from geogrid.sample.town import (
    FORMATS,
    SampleCounty,
    SampleFiles,
    SampleTown,
    generate_county,
    generate_town,
)

__all__ = [
    "FORMATS",
    "SampleCounty",
    "SampleFiles",
    "SampleTown",
    "generate_county",
    "generate_town",
]
