"""Every model family, in one plain dict: the single place that lists them.

A family is a name (what ``config.json`` records as ``"family"``), the model class that implements
:class:`~arlm.models.base.ARModel` and reads/writes its folder, its configuration dataclass, and the
``[model.SECTION]`` table of the training presets that configures it (None: not trained by the
neural trainer). The command line's choices, the presets, checkpoint loading, the quickstart and the
benchmarks all read :data:`FAMILIES`, so adding a family is one new file plus one line here
(docs/architecture.md, "Adding a model family").

:data:`TRAIN_COMMANDS` maps each ``arlm train COMMAND`` of a neural family to its family and the
settings the command fixes (``lstm`` is the ``rnn`` family with ``cell="lstm"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arlm.errors import FormatError
from arlm.io import recover_dir
from arlm.models.gpt2 import GPT2LM
from arlm.models.infinigram import InfiniGramModel
from arlm.models.ngram import NGramModel
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.sigma_gpt import SigmaGPT, SigmaGPTConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.models.window import WindowConfig, WindowLM


@dataclass(frozen=True)
class Family:
    """One model family: how to build it, configure it, and read its folders."""

    model_class: type
    config_class: type | None  # None: the family is estimated, not configured (n-grams)
    preset_section: str | None  # the presets' [model.SECTION]; None: not trained by the Trainer
    summary: str

    @property
    def trainable(self) -> bool:
        """Trained by :class:`~arlm.train.trainer.Trainer` from a preset."""
        return self.preset_section is not None


FAMILIES: dict[str, Family] = {
    "ngram": Family(NGramModel, None, None, "counted n-grams: MLE, add-k, Kneser-Ney, modified KN"),
    "infinigram": Family(InfiniGramModel, None, None,
                         "∞-gram: the longest matching suffix, counted in a suffix array (Liu et al. 2024)"),
    "window": Family(WindowLM, WindowConfig, "window", "fixed-window neural LM (Bengio et al. 2003)"),
    "rnn": Family(RNNLM, RNNConfig, "rnn", "recurrent LM: Elman, LSTM or GRU cells"),
    "transformer": Family(TransformerLM, TransformerConfig, "transformer", "decoder-only Transformer"),
    "gpt2": Family(GPT2LM, TransformerConfig, None, "GPT-2 weights imported from HF (arlm import-gpt2)"),
    # σ-GPT has the Transformer's settings: it reads the presets' [model.transformer] table
    "sigma_gpt": Family(SigmaGPT, SigmaGPTConfig, "transformer",
                        "σ-GPT, any-order Transformer trained on random orders (Pannatier 2024)"),
}

# `arlm train COMMAND` -> (family, the model settings the command fixes)
TRAIN_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "window": ("window", {}),
    "rnn": ("rnn", {}),
    "lstm": ("rnn", {"cell": "lstm"}),
    "gru": ("rnn", {"cell": "gru"}),
    "transformer": ("transformer", {}),
    "sigma_gpt": ("sigma_gpt", {}),
}


def family_of(folder: str | Path) -> str:
    """The family a model folder's ``config.json`` names (checked against :data:`FAMILIES`).

    A folder whose last save a crash cut short is mended first (:func:`arlm.io.recover_dir`)."""
    path = recover_dir(folder) / "config.json"
    if not path.is_file():
        inside = [Path(folder) / name for name in ("best", "last")
                  if (Path(folder) / name / "config.json").is_file()]
        if inside:  # a run folder: its checkpoints are the model folders
            raise FormatError(f"{folder} is a training run, not a model folder; pass one of its "
                              f"checkpoints: {' or '.join(map(str, inside))}")
        raise FormatError(f"{folder} is not a model folder (no config.json); pass the folder that "
                          "`arlm train` or `arlm import-gpt2` wrote, or an .arpa file")
    try:
        family = json.loads(path.read_text(encoding="utf-8")).get("family")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise FormatError(f"{path} is not valid JSON ({e}); the model folder is damaged") from e
    if family not in FAMILIES:
        raise FormatError(f"{path} names an unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return family


def load_family_model(folder: str | Path, device: str = "cpu"):
    """The model of any family from its folder (no tokenizer; with one:
    :func:`arlm.usecases.checkpoints.load_model`)."""
    cls = FAMILIES[family_of(folder)].model_class
    return cls.load(folder, device=device) if cls is not NGramModel else cls.load(folder)
