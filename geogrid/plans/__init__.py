"""The plan service: partition a town from the database and manage its plans.

A *plan* is one partition of a town into basic grids (网格), stored with its parameters,
quality metrics and grids at three levels (1 town, 2 village, 3 basic grid). Plans move
draft → active → archived; only drafts may be edited, and activating a draft archives the
town's previous active plan in the same transaction.

Every function is keyword-only after its first argument, takes an :class:`~sqlalchemy.Engine`
(when it writes) or a :class:`~sqlalchemy.Connection` (when it reads), and raises the domain
errors of :mod:`geogrid.errors`. No HTTP here: :mod:`api.routes.plans` and the ``geogrid
plan`` commands call these functions.

The package: ``common`` (constants, value objects, ETags, parameters), ``inputs`` (a town's
partition inputs from the database), ``create`` (check, partition, store), ``read``,
``diff``, ``activate``, ``edits`` (moving a group in a draft), ``staff`` (grid posts) and
``jobs`` (plans created in the background). Import from ``geogrid.plans``.

Storage of a plan
-----------------
* ``plans.params``: the :class:`partition.PartitionParams` used (``target``, ``min``,
  ``max``, ``seed``, ...), plus ``cadres`` and ``redraw_from`` when given.
* ``plans.metrics``: ``version`` (bumped by every edit; the ETag of the plan), ``totals`` and
  ``villages`` (the partitioner's quality report, with the per-village balance bounds),
  ``inputs`` (what was loaded, see the failed-geocode policy below), ``unassigned``
  households, ``households_moved`` (redraw) and an ``edits`` log.
* ``grids`` level 3: geometry, households, population and ``metrics`` with ``deviation``,
  ``polsby_popper``, ``area_km2``, ``flags``, ``groups`` and ``units`` — the territory
  (WKB, hex) and household count of every member unit as the partitioner saw them. The
  units are what lets an edit be re-validated later without re-deriving territories
  (supplied polygons are repaired by the partitioner, and split-group parts exist only
  in the plan).
* ``grid_groups``: one row per member group; ``part`` is ``NULL`` for a group that is one
  unit of the plan, ``1, 2, ...`` when the group is split into several units
  (``--split-large`` parts, or a group straddling the parts of a multi-part village).

Failed geocodes
---------------
Households whose geocoding failed have no point but do have a villager group. They are
kept in their group (the count of a grid is the count of its groups' registers) and are
given to the partitioner at a stand-in point, first of: a point on the group's *supplied*
polygon; the group's member household nearest to the members' centroid; a point on the
group's previously derived polygon; a point on the village polygon. Their count is
recorded in ``plans.metrics["inputs"]["placed_failed_geocodes"]``. Households with no
villager group cannot be placed in a grid of whole groups: they are left out of the
partition and counted in ``inputs["without_group"]`` (their register numbers are listed
in ``plans.metrics["unassigned"]`` with reason ``no_group``).
"""

from __future__ import annotations

from geogrid.plans.activate import activate_plan
from geogrid.plans.common import (
    STAFF_POSTS,
    STAFF_ROLES,
    GroupChange,
    MoveResult,
    PlanDiff,
    PlanInfo,
    ProgressFn,
    StaffPost,
    StaleVersion,
    make_etag,
    params_from_options,
    version_from_if_match,
)
from geogrid.plans.create import check_create, create_plan, write_basic_grids
from geogrid.plans.diff import diff_plans
from geogrid.plans.edits import (
    MoveCheck,
    NeedsConfirmation,
    band_warnings,
    check_move,
    move_group_in_plan,
    move_reason,
)
from geogrid.plans.inputs import load_inputs
from geogrid.plans.jobs import PlanJob, PlanJobs
from geogrid.plans.read import get_plan, list_plans, load_plan, plan_grids, plan_version
from geogrid.plans.staff import assign_staff, grid_staff

__all__ = [
    "STAFF_POSTS",
    "STAFF_ROLES",
    "GroupChange",
    "MoveCheck",
    "MoveResult",
    "NeedsConfirmation",
    "PlanDiff",
    "PlanInfo",
    "PlanJob",
    "PlanJobs",
    "ProgressFn",
    "StaffPost",
    "StaleVersion",
    "activate_plan",
    "assign_staff",
    "band_warnings",
    "check_create",
    "check_move",
    "create_plan",
    "diff_plans",
    "get_plan",
    "grid_staff",
    "list_plans",
    "load_inputs",
    "load_plan",
    "make_etag",
    "move_group_in_plan",
    "move_reason",
    "params_from_options",
    "plan_grids",
    "plan_version",
    "version_from_if_match",
    "write_basic_grids",
]
