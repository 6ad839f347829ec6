"""Training presets (TOML files shipped in ``arlm/presets``) and command-line overrides.

A preset has a ``[train]`` table (:class:`~arlm.train.TrainConfig` fields) and one ``[model.FAMILY]``
table per family (``transformer``, ``rnn``, ``window``: the family's config fields, ``vocab_size``
excepted, which comes from the tokenizer). Overrides are ``field=value`` strings: ``lr=3e-4``,
``train.max_steps=500``, ``model.d_model=64``, ``betas=[0.9, 0.99]``. A bare name is looked up in the
training settings, then in the model's; the value is read as a TOML value (number, true/false,
"string", [list]) and, failing that, as a plain string; ``none`` means None.

:func:`run_training` is what ``arlm train window|rnn|lstm|gru|transformer`` calls: it builds the
tokenizer on the training split, the model and the trainer, and writes ``tokenizer.json`` into every
checkpoint folder so that ``arlm eval OUT/best`` and ``arlm sample OUT/best`` read it as a model folder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from arlm.errors import ConfigError, MismatchError

FAMILIES = ("transformer", "rnn", "window")
# command name -> (family, fixed model settings)
COMMANDS = {"transformer": ("transformer", {}), "window": ("window", {}), "rnn": ("rnn", {}),
            "lstm": ("rnn", {"cell": "lstm"}), "gru": ("rnn", {"cell": "gru"})}


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


def model_config_class(family: str) -> type:
    from arlm.models.rnn import RNNConfig
    from arlm.models.transformer import TransformerConfig
    from arlm.models.window import WindowConfig

    return {"transformer": TransformerConfig, "rnn": RNNConfig, "window": WindowConfig}[family]


def _coerce(value: Any, default: Any) -> Any:
    """Ints given where a float is expected become floats; lists become tuples for tuple fields."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


@dataclass
class ResolvedSettings:
    family: str
    model: dict[str, Any]  # model config fields (vocab_size added later)
    train: dict[str, Any]  # TrainConfig fields
    model_fields_given: set[str]


def resolve(command: str, preset: str, overrides: list[str]) -> ResolvedSettings:
    """Preset tables + fixed settings of the command + ``field=value`` overrides, all names checked."""
    from arlm.train.trainer import TrainConfig

    if command not in COMMANDS:
        raise ConfigError(f"unknown model command {command!r}; choose one of {', '.join(COMMANDS)}")
    family, fixed = COMMANDS[command]
    data = load_preset(preset)
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name: f for f in dataclasses.fields(model_config_class(family))
                    if f.name != "vocab_size"}
    models = data.get("model", {})
    bad = sorted(set(models) - set(FAMILIES))
    if bad:
        raise ConfigError(f"preset {preset} has [model] tables for unknown families {', '.join(bad)}; "
                          f"use {', '.join(FAMILIES)}")
    model = dict(models.get(family, {}))
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
    # types: ints where floats are expected, lists for tuples
    defaults_train = TrainConfig.__dataclass_fields__
    for name, value in train.items():
        default = defaults_train[name].default
        train[name] = _coerce(value, default)
    for name, value in model.items():
        default = model_fields[name].default
        model[name] = _coerce(value, default)
    return ResolvedSettings(family, model, train, given | set(models.get(family, {})))


def build_model(settings: ResolvedSettings, vocab_size: int):
    """The model of ``settings`` for a vocabulary; a Transformer's positions default to block_size."""
    from arlm.models.rnn import RNNLM
    from arlm.models.transformer import TransformerLM
    from arlm.models.window import WindowLM

    cls = {"transformer": TransformerLM, "rnn": RNNLM, "window": WindowLM}[settings.family]
    values = dict(settings.model)
    block = settings.train.get("block_size", 128)
    if settings.family == "transformer":
        if "block_size" not in settings.model_fields_given or "block_size" not in values:
            values["block_size"] = block
        if values["block_size"] < block:
            raise ConfigError(f"the Transformer has {values['block_size']} positions but training rows "
                              f"are block_size={block} tokens; raise model.block_size or lower "
                              "train.block_size")
    try:
        config = model_config_class(settings.family)(vocab_size=vocab_size, **values)
    except TypeError as e:
        raise ConfigError(f"bad {settings.family} model settings: {e}") from e
    try:
        return cls(config)
    except (AssertionError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"bad {settings.family} model settings ({e}); fix them with --set") from e


def make_train_config(settings: ResolvedSettings, **extra: Any):
    from arlm.train.trainer import TrainConfig

    values = {**settings.train, **extra}
    try:
        return TrainConfig.from_dict(values)
    except TypeError as e:
        raise ConfigError(f"bad training settings: {e}") from e


def tokenizer_trainer(base, tokenizer):
    """A Trainer subclass instance maker whose checkpoints also hold ``tokenizer.json``."""

    class _Trainer(base):
        def save(self, folder):
            folder = super().save(folder)
            if self.dist.is_main:
                tokenizer.save(Path(folder) / "tokenizer.json")
            return folder

    return _Trainer


def check_resume(folder: str | Path, tokenizer, family: str) -> None:
    """Refuse a checkpoint of another family or tokenizer before anything is touched."""
    from arlm.data.tokenizers import load_tokenizer

    folder = Path(folder)
    cfg = folder / "config.json"
    if not folder.is_dir() or not cfg.is_file():
        raise ConfigError(f"cannot resume: {folder} is not a checkpoint folder (e.g. OUT/last)")
    try:
        saved_family = json.loads(cfg.read_text(encoding="utf-8")).get("family")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"cannot resume: {cfg} is not valid JSON ({e})") from e
    if saved_family != family:
        raise MismatchError(f"checkpoint {folder} holds a {saved_family!r} model, not a {family!r} model; "
                            "resume with the same model command and settings")
    tok_file = folder / "tokenizer.json"
    if tok_file.is_file():
        saved = load_tokenizer(tok_file)
        if saved.kind != tokenizer.kind or list(saved.vocab) != list(tokenizer.vocab):
            raise MismatchError(f"checkpoint {folder} was trained with another tokenizer ({saved.kind}, "
                                f"{saved.vocab_size} tokens; now {tokenizer.kind}, {tokenizer.vocab_size}); "
                                "resume with the same --tokenizer and corpus")


def run_training(command: str, *, corpus: str = "shakespeare", split: str = "train",
                 val_split: str = "val", preset: str = "tiny", overrides: list[str] | None = None,
                 tokenizer: str = "char", vocab_size: int | None = None, unit: str = "lines",
                 encoding: str = "utf-8", out_dir: str | Path | None = "runs/model",
                 resume: str | Path | None = None, threads: int = 0, log=print):
    """Train ``command``'s model on ``corpus``'s ``split`` (validating on ``val_split``): the CLI's work.

    Returns (trainer, summary). Every user error is an ArlmError raised before anything is written."""
    import torch

    from arlm import pipeline
    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus
    from arlm.errors import DataError
    from arlm.train.trainer import Trainer

    settings = resolve(command, preset, overrides or [])
    if threads:
        torch.set_num_threads(threads)
    corp = load_corpus(corpus, encoding)
    spec = pipeline.TokenizerSpec(tokenizer, vocab_size=vocab_size)
    tok = pipeline.build_tokenizer(corp, spec, split)
    train = encode_corpus(corp, split, tok, unit)
    val = encode_corpus(corp, val_split, tok, unit) if val_split else None
    config = make_train_config(settings, out_dir=None if out_dir is None else str(out_dir))
    for name, data in (("training", train), ("validation", val)):
        if data is not None and len(data.tokens) < config.block_size + 1:
            raise DataError(f"the {name} split has {len(data.tokens):,} tokens, fewer than block_size + 1 = "
                            f"{config.block_size + 1}; lower block_size (--set block_size=…) or use "
                            "more data")
    if resume is not None:
        check_resume(resume, tok, settings.family)
    model = build_model(settings, tok.vocab_size)
    if resume is not None:
        from arlm.train.checkpoint import check_model

        check_model(resume, model)
    trainer = tokenizer_trainer(Trainer, tok)(model, config, train, val)
    log(f"{corp.name} {split}: {len(train.tokens):,} tokens ({tok.kind}, vocabulary {tok.vocab_size:,}); "
        f"{settings.family} {dataclasses.asdict(model.config)}; {model.num_parameters():,} parameters")
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tok.save(out / "tokenizer.json")
        (out / "run.json").write_text(json.dumps(
            {"command": command, "preset": preset, "overrides": overrides or [], "corpus": corpus,
             "split": split, "tokenizer": tokenizer, "unit": unit, "model": dataclasses.asdict(model.config),
             "train": dataclasses.asdict(config)}, indent=2, default=str), encoding="utf-8")
    summary = trainer.train(resume_from=resume)
    return trainer, summary
