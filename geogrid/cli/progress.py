"""A rich progress bar with one row per pipeline stage (read, validate, geocode, load...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

StageProgress = Callable[[str, int, int], None]


@contextmanager
def stage_progress(console: Console) -> Iterator[StageProgress]:
    """Yield ``progress(stage, done, total)`` drawing one bar per stage; removed at the end."""
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done if total else 1, total=max(total, 1))

        yield progress
