"""The planner's editing of draft plans, beyond :mod:`geogrid.plans`.

* :mod:`geogrid.planner.history` — the edit log of a plan (migration 0013): village
  snapshots before and after every edit, undo and redo as new versions, the history list;
* :mod:`geogrid.planner.edits` — rename and lock grids, preview a move (band and
  contiguity warnings, refusals with a reason code), re-run one village's partition;
* :mod:`geogrid.planner.exports` — a plan as GeoPackage, CSV or Excel;
* :mod:`geogrid.planner.photos` — staff photos in the content-addressed file store.

Nothing is imported here, so that :mod:`geogrid.models` can register the edit-log table
without importing the services.
"""
