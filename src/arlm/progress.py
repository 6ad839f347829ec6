"""Progress bars for long work (rich), quiet when output is not a terminal or when asked."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Progress and messages go to stderr so that stdout stays clean for --json and piping.
console = Console(stderr=True)


class _Quiet:
    """Stands in for a rich Progress when nothing should be drawn."""

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def progress(enabled: bool | None = None) -> Iterator[Progress | _Quiet]:
    """A rich Progress (description, bar, done/total, %, elapsed, ETA), or a silent stand-in.

    ``enabled=None`` draws only when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _Quiet()
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        yield bar
