"""Training presets (TOML files shipped in ``arlm/presets``) and command-line overrides.

A preset has a ``[train]`` table (:class:`~arlm.train.TrainConfig` fields) and one ``[model.FAMILY]``
table per family (``transformer``, ``rnn``, ``window``: the family's config fields, ``vocab_size``
excepted, which comes from the tokenizer). Overrides are ``field=value`` strings: ``lr=3e-4``,
``train.max_steps=500``, ``model.d_model=64``, ``betas=[0.9, 0.99]``. A bare name is looked up in the
training settings, then in the model's; the value is read as a TOML value (number, true/false,
"string", [list]) and, failing that, as a plain string; ``none`` means None. Each value is checked
against the type of its setting, so ``lr=abc`` says that ``lr`` wants a number.

The families and their ``[model.SECTION]`` tables come from :mod:`arlm.models.registry`; what a run
does with the settings is :mod:`arlm.usecases.train`'s business.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from arlm.errors import ConfigError
from arlm.models.registry import FAMILIES, TRAIN_COMMANDS

# the [model.SECTION] tables a preset may hold
SECTIONS = tuple(dict.fromkeys(f.preset_section for f in FAMILIES.values() if f.trainable))


def list_presets() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("arlm.presets").iterdir()
                  if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The parsed TOML of a built-in preset name, or of a .toml file path."""
    path = Path(name)
    if name.endswith(".toml") and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        if name not in list_presets():
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(list_presets())} "
                              "or pass a .toml file")
        text = resources.files("arlm.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {name} is not valid TOML ({e})") from e
    unknown = sorted(set(data) - {"train", "model"})
    if unknown:
        raise ConfigError(f"preset {name} has unknown tables {', '.join(unknown)}; use [train] and "
                          "[model.FAMILY]")
    return data


def parse_value(text: str) -> Any:
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# the type names a setting's annotation may hold -> (is the value of that type?, how to ask for it)
_TYPES = {
    "tuple": (lambda v: isinstance(v, list | tuple), "a list like [0.9, 0.95]"),
    "list": (lambda v: isinstance(v, list), "a list like [[0, 1, 2], [2, 1, 0]]"),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "text"),
}


def _coerce(name: str, value: Any, field: dataclasses.Field, where: str) -> Any:
    """``value`` as the type of setting ``field`` wants (ints become floats, lists tuples), or a
    ConfigError that names the setting and the type."""
    kind = str(field.type)
    wanted = [t for t in _TYPES if re.search(rf"\b{t}\b", kind)]
    for container in ("tuple", "list"):  # tuple[float, float]: the items' type is not the setting's
        if container in wanted:
            wanted = [container]
            break
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{where} setting {name} cannot be none; give a value")
    if wanted and not any(_TYPES[t][0](value) for t in wanted):
        want = " or ".join(_TYPES[t][1] for t in wanted)
        raise ConfigError(f"{where} setting {name} wants {want}, got {value!r}; e.g. --set {name}=…")
    if "float" in wanted and "int" not in wanted and isinstance(value, int):
        return float(value)
    return tuple(value) if isinstance(value, list) and wanted != ["list"] else value


@dataclass
class ResolvedSettings:
    family: str
    model: dict[str, Any]  # model config fields (vocab_size added later)
    train: dict[str, Any]  # TrainConfig fields
    model_fields_given: set[str]


def resolve(command: str, preset: str, overrides: list[str]) -> ResolvedSettings:
    """Preset tables + fixed settings of the command + ``field=value`` overrides, all names checked."""
    from arlm.train.trainer import TrainConfig

    if command not in TRAIN_COMMANDS:
        raise ConfigError(f"unknown model family {command!r} to train; choose one of "
                          f"{', '.join(TRAIN_COMMANDS)} (n-grams: `arlm train ngram`)")
    family, fixed = TRAIN_COMMANDS[command]
    section = FAMILIES[family].preset_section
    data = load_preset(preset)
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name: f for f in dataclasses.fields(FAMILIES[family].config_class)
                    if f.name != "vocab_size"}
    models = data.get("model", {})
    bad = sorted(set(models) - set(SECTIONS))
    if bad:
        raise ConfigError(f"preset {preset} has [model] tables for unknown families {', '.join(bad)}; "
                          f"use {', '.join(SECTIONS)}")
    model = dict(models.get(section, {}))
    train = dict(data.get("train", {}))
    for name in model:
        if name not in model_fields:
            raise ConfigError(f"preset {preset}: unknown {family} setting {name!r}; the settings are "
                              f"{', '.join(model_fields)}")
    for name in train:
        if name not in train_fields:
            raise ConfigError(f"preset {preset}: unknown training setting {name!r}; the settings are "
                              f"{', '.join(train_fields)}")
    model.update(fixed)
    given: set[str] = set()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not field=value (e.g. lr=3e-4 or model.d_model=64)")
        scope, _, name = key.rpartition(".")
        value = parse_value(raw.strip())
        if scope not in ("", "train", "model"):
            raise ConfigError(f"override {item!r}: the prefix must be train. or model., not {scope}.")
        if scope != "model" and name in train_fields:
            train[name] = value
        elif scope != "train" and name in model_fields:
            if name in fixed and value != fixed[name]:
                raise ConfigError(f"`arlm train {command}` fixes {name}={fixed[name]!r}; use "
                                  f"`arlm train rnn --set {name}={raw}` instead")
            model[name] = value
            given.add(name)
        else:
            where = {"train": "training", "model": f"{family} model"}.get(
                scope, f"training or {family} model")
            known = (list(train_fields) if scope != "model" else []) + \
                    (list(model_fields) if scope != "train" else [])
            raise ConfigError(f"unknown {where} setting {name!r}; the settings are {', '.join(known)}")
    # types: each value checked against its setting (ints where floats are expected, lists for tuples)
    for name, value in train.items():
        train[name] = _coerce(name, value, train_fields[name], "training")
    for name, value in model.items():
        model[name] = _coerce(name, value, model_fields[name], f"{family} model")
    return ResolvedSettings(family, model, train, given | set(models.get(section, {})))
