"""A progress bar (rich) for long commands, on stderr and only when stderr is a terminal: a script or a log file
gets nothing from it, only the command's own summary line (as `sharedcare import` does).

    with Bar("reindexing", total=n) as bar:
        ...
        bar.advance(len(batch))
        bar.describe("reindexing Observation")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Self, TypeVar

T = TypeVar("T")


class Bar:
    def __init__(self, description: str, total: int | None = None) -> None:
        from rich.console import Console

        self.description, self.total = description, total
        self.console = Console(stderr=True)
        self._progress: Any = None
        self._task: Any = None

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, description: str, *, total: int | None = None, completed: int | None = None) -> None:
        if self._progress is not None:
            extra: dict[str, Any] = {}
            if total is not None:
                extra["total"] = total
            if completed is not None:
                extra["completed"] = completed
            self._progress.update(self._task, description=description, **extra)

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """The items, the bar advancing as each one is done with."""
        for item in items:
            yield item
            self.advance()
