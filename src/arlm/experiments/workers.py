"""Experiments' jobs in worker processes: the arms × seeds of an experiment are independent, so they run
in parallel, one torch thread per process, and give the same numbers however many run at once (each
job's result depends on its own seed only).

``in_workers(jobs, work, start, start_args, workers)`` runs ``work(*job)`` for every job in ``workers``
spawned processes, each started once with ``start(*start_args)`` (load what every job reads: an oracle, a
data stream); with one worker it runs them inline, in this process. ``spawn`` (not ``fork``): torch's
thread pools do not survive a fork, and a spawned process starts clean. A script that calls it must guard
its entry point with ``if __name__ == "__main__":`` (``arlm``'s console script does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import torch


def worker_count(threads: int, jobs: int, cpus: int | None) -> int:
    """How many processes: ``threads`` (an experiment's ``--threads``; 0: one per CPU), at most one per
    job."""
    return max(1, min(threads or (cpus or 1), jobs))


def _start(start: Callable[..., None], *args: Any) -> None:
    torch.set_num_threads(1)
    start(*args)


def in_workers(jobs: Sequence[tuple], work: Callable[..., Any], start: Callable[..., None],
               start_args: tuple, workers: int, advance: Callable[[], None] | None = None) -> Iterator[Any]:
    """``work(*job)`` for every job, in ``workers`` processes (inline for one), each begun with one torch
    thread and ``start(*start_args)``; yields the results in the jobs' order, calling ``advance`` after
    each. ``work`` and ``start`` must be module-level functions (they are pickled by name)."""
    advance = advance or (lambda: None)
    if workers <= 1:
        threads = torch.get_num_threads()
        _start(start, *start_args)
        try:
            for job in jobs:
                yield work(*job)
                advance()
        finally:
            torch.set_num_threads(threads)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start,
                             initargs=(start, *start_args)) as pool:
        for result in pool.map(work, *zip(*jobs, strict=True)):
            yield result
            advance()
