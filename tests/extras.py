"""Optional packages a test needs: skipped where missing, except under CI, which installs them all.

CI runs the README's test command, which installs the `test`, `kenlm` and `interop` extras; there a
missing one is a broken install, and its tests must fail rather than skip in silence."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    """Whether this run is CI's: the environment variable CI is set, as CI services do (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(module: str, reason: str) -> ModuleType:
    """The module ``module``; where it is missing, skip the test (fail it under CI) with ``reason``."""
    if not in_ci():
        return pytest.importorskip(module, reason=reason)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{reason} (CI installs it, but: {e})", pytrace=False)
