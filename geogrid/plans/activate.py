"""Activate a draft plan (archiving the town's previous active plan)."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from geogrid.errors import (
    Conflict,
    IllegalTransition,
    NotFound,
)
from geogrid.overlays import assign_grids
from geogrid.placement import assign_household_grids
from geogrid.plans.common import PlanInfo
from geogrid.plans.read import get_plan

#: Every change of a plan (edit or status) bumps its version, so its ETag changes too.
_BUMP = (
    "metrics = jsonb_set(metrics, '{version}', "
    "to_jsonb(COALESCE((metrics->>'version')::int, 1) + 1))"
)


def activate_plan(engine: Engine, plan_id: int) -> PlanInfo:
    """Make a draft the town's active plan; the previous active plan is archived.

    Both changes happen in one transaction holding row locks on every plan of the town
    (``SELECT … FOR UPDATE``, in id order), so concurrent activations are serialised and
    the town never has two active plans or none in between. Both plans' versions (ETags)
    are bumped.

    Raises
    ------
    NotFound
        No plan has this id.
    IllegalTransition
        The plan is not a draft (active or archived plans cannot be activated).
    """
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT town_code FROM plans WHERE id = :id"), {"id": plan_id}
        ).first()
        if row is None:
            raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
        town = row[0]
        locked = conn.execute(
            text("SELECT id, status FROM plans WHERE town_code = :town ORDER BY id FOR UPDATE"),
            {"town": town},
        ).all()
        status = {int(i): str(s) for i, s in locked}
        if status[plan_id] != "draft":
            raise IllegalTransition(
                f"plan {plan_id} is {status[plan_id]}; only a draft plan can be activated "
                "(create a redraw from it to change an active or archived plan).",
                detail={"plan_id": plan_id, "status": status[plan_id]},
            )
        conn.execute(
            text(
                f"UPDATE plans SET status = 'archived', updated_at = now(), {_BUMP} "
                "WHERE town_code = :town AND status = 'active'"
            ),
            {"town": town},
        )
        try:
            conn.execute(
                text(
                    "UPDATE plans SET status = 'active', activated_at = now(), "
                    f"updated_at = now(), {_BUMP} WHERE id = :id"
                ),
                {"id": plan_id},
            )
        except IntegrityError as exc:  # pragma: no cover - excluded by the locks above
            raise Conflict(
                f"another plan of town {town} was activated at the same time; retry.",
                detail={"plan_id": plan_id},
            ) from exc
        # overlays (cases, key units, inspection points) and households follow the new
        # grids, atomically
        assign_grids(conn, town_code=town)
        assign_household_grids(conn, town_code=town)
        return get_plan(conn, plan_id)
