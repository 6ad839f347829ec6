"""A saved configuration read back: each value checked against its field's type before it is used.

A model folder's ``config.json`` (or an imported GPT-2's) is input like any other: a hand-edited
``"n_layer": "two"`` must be one line naming the field and the file, not a ``TypeError`` from deep
inside a constructor. :func:`config_from_dict` checks every value against the annotation of the
config dataclass's field (int, float, bool, str, None, tuples and lists, unions of those) and then
builds the config, whose own ``__post_init__`` checks the ranges.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from arlm.errors import ArlmError, FormatError


def fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (as JSON gives it) is a value of the type ``annotation``; types this check
    does not know are let through (the config's own checks see them)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation in (tuple, list) or origin in (tuple, list):
        return isinstance(value, tuple | list)
    return True


def config_from_dict(config_class: type, values: Any, where: str | Path) -> Any:
    """``config_class(**values)`` once every value has its field's type; else a FormatError naming
    the field, the value and the file ``where`` it was read from."""
    if not isinstance(values, dict):
        raise FormatError(f"{where} holds no configuration object; save the model again")
    hints = typing.get_type_hints(config_class)
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise FormatError(f"{where} has unknown settings {', '.join(map(repr, unknown))}; save the model "
                          "again")
    for name, value in values.items():
        if not fits(value, hints[name]):
            kind = getattr(hints[name], "__name__", str(hints[name]))
            raise FormatError(f"{where}: {name} must be of type {kind}, not {value!r}; fix the file or "
                              "save the model again")
    try:
        return config_class(**values)
    except ArlmError as e:
        raise FormatError(f"{where}: {e}") from None
    except (TypeError, ValueError, AssertionError) as e:
        raise FormatError(f"{where} holds an invalid configuration ({e}); save the model again") from None
