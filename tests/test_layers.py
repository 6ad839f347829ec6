"""The layering holds at package level: no module imports a package on a floor above its own.

The floors tell the chapter from the ground up (docs/architecture.md draws them): the shared ground
(errors, atomic files, progress bars, the [SOS] … [EOS] stream conventions) ← data ← models ← what is
done with a model (train, evaluate, decode, interop) ← the use cases that string those together ←
the experiments and the server ← the front ends (quickstart, cli). Packages on one floor may import
each other (``test_imports.py`` keeps them free of cycles); an import that runs back up a floor fails
here, and so does a new package that has not been given a floor.
"""

from __future__ import annotations

from pathlib import Path

from test_imports import SRC, _imports

FLOORS: list[set[str]] = [
    {"arlm", "arlm.errors", "arlm.io", "arlm.progress", "arlm.streams"},
    {"arlm.data"},
    {"arlm.models"},
    {"arlm.train", "arlm.evaluate", "arlm.decode", "arlm.interop"},
    {"arlm.usecases"},
    {"arlm.experiments", "arlm.serve"},
    {"arlm.quickstart", "arlm.cli"},
]
USE_CASE_LINES = 450  # a use case that grows past this is doing a lower layer's work


def package_of(module: str) -> str:
    """``arlm.models.ngram`` -> ``arlm.models``; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def floor_of(package: str) -> int:
    for i, floor in enumerate(FLOORS):
        if package in floor:
            return i
    raise KeyError(package)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import whose package sits on a higher floor."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if floor_of(package_of(b)) > floor_of(package_of(a)))


def test_every_package_has_a_floor():
    packages = {package_of(m) for m in _imports()}
    unplaced = sorted(p for p in packages if not any(p in floor for floor in FLOORS))
    assert not unplaced, f"give these packages a floor in FLOORS: {unplaced}"


def test_no_import_runs_back_up():
    arrows = upward_imports(_imports())
    assert not arrows, "imports that run back up a floor: " + "; ".join(arrows)


def test_the_check_sees_an_arrow_that_runs_back_up():
    graph = {"arlm.evaluate.orders": {"arlm.usecases.data", "arlm.data.orders"}}
    assert upward_imports(graph) == ["arlm.evaluate.orders -> arlm.usecases.data"]


def test_use_cases_stay_small():
    folder = SRC / "arlm" / "usecases"
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in Path(folder).glob("*.py")}
    assert sizes, f"{folder} holds no use cases"
    too_long = {name: n for name, n in sizes.items() if n > USE_CASE_LINES}
    assert not too_long, f"use-case files over {USE_CASE_LINES} lines: {too_long}"
