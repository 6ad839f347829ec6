"""Model folders: saving and loading every registered family (and ARPA files), GPT-2 in and out, and
the checks before a run resumes from a checkpoint.

A model folder holds ``config.json`` (with ``family``, one of :data:`arlm.models.registry.FAMILIES`),
the family's weights or tables, ``tokenizer.json``, and ``order.json`` when the model reads its
sequences in another order than left to right (:mod:`arlm.data.orders`; :func:`load_order` reads it).
"""

from __future__ import annotations

from pathlib import Path

from arlm.data.orders import OrderSpec, read_order_file, write_order_file
from arlm.data.tokenizers import ForeignTokenizer, Tokenizer, WordTokenizer, load_tokenizer
from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.io import atomic_dir, atomic_write
from arlm.models.base import ARModel
from arlm.models.registry import family_of, load_family_model

ARPA_SPLITS = ("whitespace", "word")


def save_model(folder: str | Path, model: ARModel, tokenizer: Tokenizer | None,
               order: OrderSpec | None = None) -> Path:
    """Write a model folder atomically: the family's files plus ``tokenizer.json`` (and
    ``order.json`` for a model that reads in another order than left to right)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_files(tmp)
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        if order is not None:
            write_order_file(tmp, order)
    return folder


def load_model(path: str | Path, arpa_split: str = "whitespace", lowercase: bool = False,
               need_tokenizer: bool = True) -> tuple[ARModel, Tokenizer | None]:
    """A model folder (any registered family) or an ARPA file -> (model, tokenizer), checked to belong
    together. With ``need_tokenizer`` a folder without ``tokenizer.json`` (an imported GPT-2 that had
    none) is a one-line error; without, its tokenizer is None.

    An ARPA file holds no tokenizer: its text is split on whitespace (``arpa_split="whitespace"``,
    KenLM's convention for pre-tokenized text) or with arlm's word regex (``"word"``, for ARPA files
    that ``arlm train ngram`` wrote with its default word tokenizer), optionally lowercased.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"model {path} does not exist; train one with `arlm train … --out {path}`")
    if path.is_file():
        return _load_arpa(path, arpa_split, lowercase)
    model = load_family_model(path)
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        if need_tokenizer:
            raise DataError(f"{path} has no tokenizer.json, so its text cannot be encoded or decoded; "
                            "import the GPT-2 folder again with its tokenizer.json next to config.json")
        return model, None
    tokenizer = load_tokenizer(tok_file)
    model_vocab = getattr(model, "vocab", None)
    if tokenizer.vocab_size != model.vocab_size or (
            model_vocab is not None and list(model_vocab) != list(tokenizer.vocab)):
        raise MismatchError(f"the tokenizer in {path} does not match the model ({tokenizer.vocab_size} "
                            f"vs {model.vocab_size} tokens, or other tokens); save a model and its "
                            "tokenizer together, as `arlm train` does")
    return model, tokenizer


def _load_arpa(path: Path, split: str, lowercase: bool) -> tuple[ARModel, Tokenizer]:
    from arlm.interop.arpa import read_arpa

    if split not in ARPA_SPLITS:
        raise ConfigError(f"unknown ARPA text split {split!r}; choose one of {', '.join(ARPA_SPLITS)}")
    model = read_arpa(path)
    tokenizer = WordTokenizer.from_vocab(model.vocab, whitespace=split == "whitespace",
                                         lowercase=lowercase)
    return model, tokenizer


def load_order(path: str | Path) -> OrderSpec:
    """The order saved with a model folder (``l2r`` for an ARPA file or a folder without order.json)."""
    path = Path(path)
    return read_order_file(path) if path.is_dir() else OrderSpec()


def check_resume(folder: str | Path, tokenizer: Tokenizer, family: str) -> None:
    """Refuse a checkpoint of another family or tokenizer before anything is touched."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ConfigError(f"cannot resume: {folder} is not a checkpoint folder (e.g. OUT/last)")
    try:
        saved_family = family_of(folder)
    except FormatError as e:
        raise ConfigError(f"cannot resume: {e}") from e
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


def import_gpt2(hf_folder: str | Path, out: str | Path) -> tuple[ARModel, Tokenizer | None]:
    """An HF GPT-2 folder (``config.json``, ``model.safetensors``, optionally ``tokenizer.json``) ->
    an arlm model folder of family ``gpt2`` that ``eval``/``sample``/``generate`` read; returns the
    model and its tokenizer (None when the folder had no ``tokenizer.json``)."""
    from arlm.interop.gpt2 import load_gpt2

    hf_folder = Path(hf_folder)
    if not hf_folder.is_dir():
        raise DataError(f"{hf_folder} is not a folder; pass the folder that save_pretrained wrote")
    model = load_gpt2(hf_folder)
    tok_file = hf_folder / "tokenizer.json"
    tokenizer = ForeignTokenizer.from_file(tok_file) if tok_file.is_file() else None
    if tokenizer is not None and tokenizer.vocab_size > model.vocab_size:
        raise MismatchError(f"{tok_file} has {tokenizer.vocab_size} tokens but the model only "
                            f"{model.vocab_size}; pass the tokenizer that belongs to the model")
    save_model(out, model, tokenizer)
    return model, tokenizer


def export_gpt2(checkpoint: str | Path, hf_folder: str | Path) -> Path:
    """A Transformer or GPT-2 model folder -> an HF GPT-2 folder (``from_pretrained`` reads it).

    A model with arlm's own vocabulary keeps its ids: [EOS] = 2, [SOS] = 1, [PAD] = 0 in the config.
    A foreign tokenizer (an imported GPT-2's) is written back as ``tokenizer.json``.
    """
    from arlm.interop.gpt2 import save_gpt2
    from arlm.models.transformer import TransformerLM
    from arlm.streams import EOS_ID, PAD_ID, SOS_ID

    hf_folder = Path(hf_folder)
    if hf_folder.exists() and (not hf_folder.is_dir() or any(hf_folder.iterdir())):
        raise ConfigError(f"{hf_folder} already exists and is not an empty folder; choose a new folder "
                          "or remove it first")
    model, tokenizer = load_model(checkpoint, need_tokenizer=False)
    if not isinstance(model, TransformerLM) or not model.gpt2_layout:
        raise MismatchError(f"{checkpoint} holds a {family_of(checkpoint)!r} model; only Transformer and "
                            "GPT-2 models export to GPT-2's format")
    if isinstance(tokenizer, ForeignTokenizer):
        save_gpt2(model, hf_folder, eos_token_id=tokenizer.eos_id, bos_token_id=tokenizer.sos_id)
        with atomic_write(hf_folder / "tokenizer.json") as f:
            f.write(tokenizer._hf.to_str())
    else:
        save_gpt2(model, hf_folder, eos_token_id=EOS_ID, bos_token_id=SOS_ID, pad_token_id=PAD_ID)
    return hf_folder
