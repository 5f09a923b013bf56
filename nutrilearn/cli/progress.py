"""A progress bar on stderr for long CLI jobs (quiet when stderr is not a terminal)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yields ``update(done, total)``; rich draws it on a terminal, plain lines otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    interactive = sys.stderr.isatty()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not interactive,
        console=None,
    ) as bar:
        task = bar.add_task(description, total=total)
        last_printed = [-1]

        def update(done: int, of: int) -> None:
            bar.update(task, completed=done, total=of)
            if not interactive:
                step = max(1, of // 10)
                if done == of or done // step != last_printed[0] // step:
                    print(f"{description}: {done}/{of}", file=sys.stderr)
                    last_printed[0] = done

        yield update
