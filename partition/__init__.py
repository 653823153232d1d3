"""geogrid's pure partitioner: households and polygons in, basic grids out.

No database, web or ORM code is imported here; everything works on GeoDataFrames and
files alone. The building blocks:

* :func:`derive_territories` / :func:`repair_territories` — group polygons tiling a village;
* :func:`partition_units` / :func:`solve_k` — the balanced, contiguous solver on arrays;
* :func:`partition_plan` — validate, partition village by village (process pool or Dask);
* :func:`validate_plan` — the rules checker;
* :func:`move_group` — a re-validated planner edit;
* :func:`quality_report` / :func:`write_html_report` — JSON and offline HTML reports.
"""

from partition.edit import move_group
from partition.plan import (
    PartitionParams,
    Plan,
    assemble_plan,
    neighbours,
    partition_plan,
    partition_village,
    run_villages,
    village_work,
)
from partition.report import quality_report, render_html_report, write_html_report
from partition.solver import BalanceBound, Objective, balance_bound, partition_units, solve_k
from partition.territories import derive_territories, repair_territories
from partition.validate import Violation, validate_plan

__all__ = [
    "BalanceBound",
    "Objective",
    "PartitionParams",
    "Plan",
    "Violation",
    "assemble_plan",
    "balance_bound",
    "derive_territories",
    "move_group",
    "neighbours",
    "partition_plan",
    "partition_units",
    "partition_village",
    "quality_report",
    "render_html_report",
    "repair_territories",
    "run_villages",
    "solve_k",
    "validate_plan",
    "village_work",
    "write_html_report",
]
