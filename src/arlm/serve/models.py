"""The models a server holds: loaded once at start-up, each with its tokenizer and a short name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arlm.data.tokenizers import Tokenizer
from arlm.errors import ConfigError
from arlm.models.base import ARModel
from arlm.models.transformer import TransformerLM

GENERIC_NAMES = ("best", "last")  # checkpoint folders named after their role, not their model


@dataclass
class LoadedModel:
    """A model, its tokenizer and what clients see of them."""

    name: str
    model: ARModel
    tokenizer: Tokenizer
    path: str = ""

    @property
    def family(self) -> str:
        """The registry's name of the model's family (:data:`arlm.models.registry.FAMILIES`)."""
        from arlm.models.registry import FAMILIES

        for name, family in FAMILIES.items():
            if type(self.model) is family.model_class:
                return name
        return getattr(self.model, "family", type(self.model).__name__)

    @property
    def block_size(self) -> int | None:
        """The longest sequence the model reads (None: unbounded, e.g. an n-gram model)."""
        return getattr(getattr(self.model, "config", None), "block_size", None)

    @property
    def has_attention(self) -> bool:
        """True for the Transformers whose attention weights :mod:`arlm.models.attention_maps` reads."""
        return isinstance(self.model, TransformerLM) and self.model.gpt2_layout

    def info(self) -> dict[str, Any]:
        """The JSON that GET /v1/models lists: the name, never the checkpoint's path on the server."""
        num = getattr(self.model, "num_parameters", None)
        return {"name": self.name, "family": self.family,
                "vocab_size": self.model.vocab_size, "tokenizer": self.tokenizer.kind,
                "block_size": self.block_size, "parameters": num() if callable(num) else None,
                "attention": self.has_attention}


def model_name(path: str | Path, taken: set[str]) -> str:
    """A short unique name for a checkpoint: its folder's name (``runs/tiny/best`` -> ``tiny/best``)."""
    path = Path(path)
    stem = path.stem if path.is_file() else path.name
    name = f"{path.parent.name}/{stem}" if stem in GENERIC_NAMES and path.parent.name else stem
    unique, i = name, 2
    while unique in taken:
        unique, i = f"{name}-{i}", i + 1
    return unique


def load_models(paths: Sequence[str | Path]) -> dict[str, LoadedModel]:
    """Load every checkpoint once (:func:`arlm.usecases.checkpoints.load_model`) -> {name: LoadedModel}."""
    from arlm.usecases.checkpoints import load_model

    if not paths:
        raise ConfigError("give at least one checkpoint to serve, e.g. `arlm serve runs/transformer/best`")
    models: dict[str, LoadedModel] = {}
    for path in paths:
        model, tokenizer = load_model(path)
        if hasattr(model, "eval"):
            model.eval()
        name = model_name(path, set(models))
        models[name] = LoadedModel(name, model, tokenizer, str(path))
    return models
