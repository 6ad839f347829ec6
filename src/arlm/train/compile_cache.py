"""Compiled training's artifacts kept across runs: a second run with the same shapes does not compile
again.

``torch.compile`` turns the training step into generated C++ (TorchInductor); compiling it from
nothing takes 30–60 s on a 2-core CPU for nanoGPT's baby config (docs/benchmarks.md), most of it
Inductor's code generation and the C++ compiler. Inductor keeps what it built in its own on-disk
cache (``TORCHINDUCTOR_CACHE_DIR``, by default a folder under /tmp that a reboot or a fresh machine
does not have). After the first compiled step of a run, the trainer also saves torch's *cache
artifacts* (``torch.compiler.save_cache_artifacts()``: the AOTAutograd and Inductor graph-cache
entries, i.e. the traced graphs and the generated code) to one file in arlm's cache folder,

    $ARLM_CACHE/compiled/<key>.bin        (default ~/.cache/arlm/compiled/)

and a later run with the same key loads them (``torch.compiler.load_cache_artifacts``) before it
compiles: its compile is then a cache hit (counted by :func:`cache_counters`): the step is traced
again (1–2 s), the generated code is not generated again, and only the C++ libraries that Inductor's own
cache lacks are built again from it (the artifacts hold the code, not the built libraries: on a fresh
Inductor cache a tiny model's first step took 15 s from the artifacts, 3.5 s with Inductor's cache
still there, 39 s from nothing). The file starts with the SHA-256 of what follows, so a damaged one is
recognised and ignored.

The key is a hash of everything that shapes the graph: the torch and arlm versions, the CPU's vector
instruction set (``torch.backends.cpu.get_cpu_capability()``), the device type, the model's family and
config, the batch (rows × block) and the dtype (clipping and AdamW run outside the graph, so their
settings are not in it). It only picks the file: torch checks each loaded entry against its own key
(the traced graph, the inputs, the compiler's flags), so an artifact of an edited model is never used,
only compiled anew. A missing, unreadable or unwritable cache costs a compile, never the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from arlm.data.cache import default_cache_dir
from arlm.io import atomic_write

# the torch.compiler functions this needs (torch >= 2.6); without them nothing is kept
ARTIFACTS_SUPPORTED = hasattr(torch.compiler, "save_cache_artifacts")


def artifact_folder() -> Path:
    """``$ARLM_CACHE/compiled`` (default ``~/.cache/arlm/compiled``)."""
    return default_cache_dir() / "compiled"


def artifact_key(model: Any, config: Any, device_type: str, whole_step: bool) -> str:
    """The hex key of a training run's compiled graph: a hash of torch's and arlm's versions, the CPU's
    instruction set, the device type, the model's family and config, the batch shape and the dtype."""
    from arlm import __version__

    fields = ("micro_batch_size", "block_size", "dtype")
    model_config = getattr(model, "config", None)
    described = {
        "torch": torch.__version__, "arlm": __version__, "isa": torch.backends.cpu.get_cpu_capability(),
        "device": device_type, "whole_step": whole_step, "family": type(model).__name__,
        "model": dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config) else None,
        "train": {name: getattr(config, name) for name in fields},
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def artifact_path(key: str) -> Path:
    return artifact_folder() / f"{key}.bin"


def has_artifacts(key: str) -> bool:
    """Whether an earlier run saved the compiled artifacts of ``key``."""
    return ARTIFACTS_SUPPORTED and artifact_path(key).is_file()


def load_artifacts(key: str) -> bool:
    """Load the saved artifacts of ``key`` into torch's caches (before compiling); True when loaded.
    A file that is damaged (its checksum does not match) or that torch cannot read is warned about in
    one line and ignored: the run compiles from scratch, and saves its artifacts anew."""
    if not has_artifacts(key):
        return False
    path = artifact_path(key)
    digest, _, payload = path.read_bytes().partition(b"\n")
    if digest != hashlib.sha256(payload).hexdigest().encode():
        warnings.warn(f"the compiled artifacts {path} could not be loaded (the file is damaged); "
                      "compiling from scratch", stacklevel=2)
        return False
    if torch.compiler.load_cache_artifacts(payload) is None:  # torch logs why
        warnings.warn(f"the compiled artifacts {path} could not be loaded by torch {torch.__version__}; "
                      "compiling from scratch", stacklevel=2)
        return False
    return True


def save_artifacts(key: str) -> Path | None:
    """Save this process's compiled artifacts under ``key`` (written whole or not at all); the path,
    or None when there was nothing to save or the folder is not writable (warned)."""
    if not ARTIFACTS_SUPPORTED:
        return None
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return None
    path = artifact_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:  # the payload's checksum, a newline, the payload
            f.write(hashlib.sha256(saved[0]).hexdigest().encode() + b"\n" + saved[0])
    except OSError as e:
        warnings.warn(f"could not keep the compiled artifacts in {path.parent} ({e}); the next run "
                      "compiles again (set ARLM_CACHE to a writable folder)", stacklevel=2)
        return None
    return path


def cache_counters() -> dict[str, int]:
    """torch's counts of compile-cache lookups in this process: ``graph_hits``/``graph_misses`` of
    Inductor's graph cache and ``autograd_hits``/``autograd_misses`` of AOTAutograd's."""
    from torch._dynamo.utils import counters

    return {"graph_hits": counters["inductor"]["fxgraph_cache_hit"],
            "graph_misses": counters["inductor"]["fxgraph_cache_miss"],
            "autograd_hits": counters["aot_autograd"]["autograd_cache_hit"],
            "autograd_misses": counters["aot_autograd"]["autograd_cache_miss"]}
