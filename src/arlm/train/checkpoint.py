"""Training checkpoints that resume exactly (F15), written atomically.

A checkpoint is a folder::

    config.json            the model's family and configuration   (NeuralLM.save_files)
    model.safetensors      the weights                            (NeuralLM.save_files)
    optimizer.pt           optimizer state (+ GradScaler state), tensors and numbers only
    hidden.safetensors     RNNs only: the hidden state carried between TBPTT batches
    trainer_state.json     step, data position, RNG states (torch, numpy, python), best validation
                           loss, the training configuration, and the SHA-256 of every other file

The folder is built under a temporary name and renamed into place (:func:`arlm.io.atomic_dir`), so a
crash leaves the previous checkpoint or the new one, never a mix. ``trainer_state.json`` is written
last and holds the checksums, so a truncated or altered file is found on load (:class:`FormatError`).
``optimizer.pt`` is read with ``torch.load(weights_only=True)``: no code is unpickled.

*Exact* resume means: training 2N steps gives bit-identical weights to N steps, save, load, N steps.
That needs everything that decides the next step: weights, optimizer moments, the step (the learning
rate is a pure function of it), the data sampler's generator state or stream position, the carried
RNN state, and the global RNG states (dropout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arlm.errors import FormatError, MismatchError
from arlm.io import atomic_dir, atomic_write, interrupts_held, recover_dir
from arlm.models.neural import NeuralLM

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
HIDDEN_FILE = "hidden.safetensors"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# RNG states as JSON
# ---------------------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), numpy and python, as JSON-ready values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNG states captured by :func:`capture_rng`."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def generator_state(generator: torch.Generator) -> list[int]:
    return generator.get_state().tolist()


def set_generator_state(generator: torch.Generator, state: list[int]) -> None:
    generator.set_state(torch.tensor(state, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(folder: str | Path, model: NeuralLM, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], scaler: torch.amp.GradScaler | None = None,
                    hidden: dict[str, torch.Tensor] | None = None, tokenizer: Any = None,
                    json_files: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint folder atomically. ``state`` is JSON-ready (step, data position, …);
    the RNG states and file checksums are added here. With a ``tokenizer`` the folder also holds
    ``tokenizer.json``, which makes it a model folder that ``arlm eval``/``generate`` read;
    ``json_files`` maps more file names to JSON values the folder holds (e.g. ``order.json``)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    # an interrupt waits until the folder is whole (torch.save must not be cut off mid-write)
    with interrupts_held(), atomic_dir(folder) as tmp:
        model.save_files(tmp)
        payload: dict[str, Any] = {"optimizer": optimizer.state_dict()}
        if scaler is not None and scaler.is_enabled():
            payload["grad_scaler"] = scaler.state_dict()
        with atomic_write(tmp / OPTIMIZER_FILE, "wb") as f:
            torch.save(payload, f)
        if hidden:
            save_file({k: v.detach().contiguous().cpu() for k, v in hidden.items()}, str(tmp / HIDDEN_FILE))
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        for name, value in (json_files or {}).items():
            with atomic_write(tmp / name) as f:
                json.dump(value, f)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {"format_version": FORMAT_VERSION, **state, "rng": capture_rng(), "files": files}
        with atomic_write(tmp / STATE_FILE) as f:  # last: it vouches for the others
            json.dump(meta, f)
    return folder


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------


def read_state(folder: str | Path) -> dict[str, Any]:
    """``trainer_state.json`` of a checkpoint, after checking every file against its checksum (and
    mending a save that a crash cut short: :func:`arlm.io.recover_dir`)."""
    folder = recover_dir(folder)
    path = folder / STATE_FILE
    if not folder.is_dir():
        raise FormatError(f"checkpoint {folder} does not exist; check the path or train without resuming")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FormatError(f"{path} is missing, so {folder} is not a complete checkpoint; "
                          "resume from another checkpoint") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path} is not valid JSON ({e}); resume from another checkpoint") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or "step" not in meta:
        raise FormatError(f"{path} lacks the step or file checksums; resume from another checkpoint")
    for name, digest in meta["files"].items():
        file = folder / name
        if not file.is_file():
            raise FormatError(f"{file} is missing from the checkpoint; resume from another checkpoint")
        if _sha256(file) != digest:
            raise FormatError(f"{file} is corrupt or truncated (its checksum does not match); "
                              "resume from another checkpoint")
    return meta


def check_model(folder: str | Path, model: NeuralLM) -> None:
    """Raise :class:`MismatchError` unless the checkpoint holds a model of ``model``'s family and config."""
    folder = Path(folder)
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FormatError(f"{folder / 'config.json'} is missing or not valid JSON ({e}); "
                          "resume from another checkpoint") from e
    family, config = saved.get("family"), saved.get("config")
    if family != model.family:
        raise MismatchError(f"checkpoint {folder} holds a {family!r} model, not a {model.family!r} model; "
                            "resume with the same model family")
    ours = dataclasses.asdict(model.config)
    if config != ours:
        diff = sorted(k for k in set(ours) | set(config or {}) if ours.get(k) != (config or {}).get(k))
        raise MismatchError(f"checkpoint {folder} holds a model with a different configuration "
                            f"({', '.join(diff)}); resume with the configuration it was trained with")


def load_checkpoint(folder: str | Path, model: NeuralLM, optimizer: torch.optim.Optimizer | None = None,
                    scaler: torch.amp.GradScaler | None = None, state: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load weights (and optimizer, scaler) into the given objects in place; restore the global RNGs.

    Returns (trainer state, carried hidden tensors or {}). Raises :class:`FormatError` for missing,
    corrupt or truncated files and :class:`MismatchError` for a checkpoint of another model.
    ``state``: what :func:`read_state` returned for this folder, if the caller has already checked it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    folder = Path(folder)
    meta = read_state(folder) if state is None else state
    check_model(folder, model)
    device = model.device
    try:
        load_model(model, str(folder / "model.safetensors"), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise FormatError(f"{folder / 'model.safetensors'} does not fit the model ({e}); "
                          "resume from another checkpoint") from e
    try:
        payload = torch.load(folder / OPTIMIZER_FILE, map_location=device, weights_only=True)
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if scaler is not None and "grad_scaler" in payload:
            scaler.load_state_dict(payload["grad_scaler"])
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise FormatError(f"{folder / OPTIMIZER_FILE} does not fit the optimizer ({e}); "
                          "resume from another checkpoint") from e
    hidden: dict[str, torch.Tensor] = {}
    if (folder / HIDDEN_FILE).is_file():
        try:
            hidden = {k: v.to(device) for k, v in load_file(str(folder / HIDDEN_FILE)).items()}
        except (SafetensorError, OSError) as e:
            raise FormatError(f"{folder / HIDDEN_FILE} is corrupt ({e}); "
                              "resume from another checkpoint") from e
    restore_rng(meta["rng"])
    return meta, hidden
