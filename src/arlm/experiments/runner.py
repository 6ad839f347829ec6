"""Running an experiment into its folder, and re-rendering a folder's report from its results alone.

``run_experiment(name, config)`` checks everything it can before any work (the name, the device, the
thread count, the output folder), runs the experiment, and writes into ``config.out``:

* ``results.json``: ``{"experiment", "summary", "command", "config", "provenance", "results"}``, where
  ``results`` is what the experiment's ``run`` returned (every number the report shows; with
  ``results["protocol"]``, what :class:`~arlm.experiments.protocol.Protocol` recorded) and
  ``provenance`` records the package versions (arlm, torch, numpy, python), the machine (platform, CPU
  count, torch threads, device), the date, the load average at the start and the end (``load``) and
  where ``command`` came from (``command_from``: "cli", the command as typed; "python", the equivalent
  command of a run started from Python, whose ``argv`` is kept). It is written atomically, so a crash
  leaves the previous results or the new ones, never half.
* ``report.md``: a header (the experiment, the command that reproduces it, the provenance, the load and
  the protocol), then the experiment's ``render`` body: the claim, tables of what was measured, where
  and why they differ. A results.json written before a provenance field existed renders without it.
* the PNG plots that ``render`` draws (:func:`arlm.experiments.plots.save_png`).

``render_report(folder)`` reads ``results.json`` only and writes ``report.md`` and the plots again: the
same results give the same files, byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.experiments import EXPERIMENTS, ExperimentConfig, experiment_module, protocol
from arlm.io import atomic_write

RESULTS = "results.json"
REPORT = "report.md"
DEVICES = ("cpu", "cuda")


def default_out(name: str) -> Path:
    """Where ``arlm experiment NAME`` writes unless told: ``runs/experiments/NAME``."""
    return Path("runs") / "experiments" / name


def list_experiments() -> list[tuple[str, str]]:
    """(name, one-line summary) of every registered experiment; one whose module is not installed in
    this build says so instead of failing the whole list."""
    rows = []
    for name in EXPERIMENTS:
        try:
            rows.append((name, experiment_module(name).SUMMARY))
        except ConfigError as e:
            rows.append((name, str(e)))
    return rows


# ---------------------------------------------------------------------------------------------
# Checks before any work
# ---------------------------------------------------------------------------------------------


def check_device(device: str) -> None:
    """``cpu``, or ``cuda`` where CUDA is available (ConfigError otherwise)."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but CUDA is not available on this machine; "
                              "use --device cpu")


def read_results(folder: str | Path) -> dict[str, Any]:
    """The parsed ``results.json`` of an experiment folder (DataError/FormatError in one sentence)."""
    folder = Path(folder)
    path = folder / RESULTS
    if not path.is_file():
        raise DataError(f"{folder} holds no {RESULTS}; run `arlm experiment NAME --out {folder}` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path} is not readable JSON ({e}); run the experiment again into that "
                          "folder or another one") from e
    if not isinstance(data, dict) or not isinstance(data.get("experiment"), str) or "results" not in data:
        raise FormatError(f"{path} is not an arlm experiment's results (no 'experiment' and 'results' "
                          "fields); choose the folder that `arlm experiment` wrote")
    for key in ("results", "config", "provenance"):
        if not isinstance(data.get(key, {}), dict):
            raise FormatError(f"{path}: its {key!r} field is not an object; the file is damaged, run the "
                              "experiment again")
    return data


def check_out(name: str, out: Path) -> None:
    """Refuse an output folder that is a file, or that holds another experiment's results (re-running
    the same experiment into its own folder replaces its results)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder for the experiment")
    if (out / RESULTS).exists():
        try:
            held = read_results(out)["experiment"]
        except (DataError, FormatError):
            raise ConfigError(f"--out {out} holds a {RESULTS} that is not an experiment's results; "
                              "choose another folder") from None
        if held != name:
            raise ConfigError(f"--out {out} holds the results of experiment {held!r}, not {name!r}; "
                              f"choose another folder (e.g. {default_out(name)}) or remove that one")


def check_checkpoint(name: str, module, checkpoint: Path | None) -> None:
    """A module's ``CHECKPOINT_FAMILIES`` says which model families its ``--checkpoint`` may hold: ``()``
    takes none (the experiment trains its own models); a module without the attribute checks for itself.
    An ARPA file or a folder of another family is refused in one sentence."""
    families = getattr(module, "CHECKPOINT_FAMILIES", None)
    if checkpoint is None or families is None:
        return
    if not families:
        raise ConfigError(f"experiment {name!r} trains its own models and takes no --checkpoint; drop it")
    from arlm.models.registry import family_of

    checkpoint = Path(checkpoint)
    if checkpoint.is_file():
        raise MismatchError(f"--checkpoint {checkpoint} is a file (an ARPA n-gram?); experiment {name!r} "
                            f"needs a model folder of family {' or '.join(families)}")
    try:
        family = family_of(checkpoint)
    except FormatError as e:
        raise MismatchError(f"--checkpoint: {e}") from None
    if family not in families:
        raise MismatchError(f"--checkpoint {checkpoint} holds a {family!r} model, but experiment {name!r} "
                            f"needs a {' or '.join(families)} model; train one with `arlm train`")


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def provenance(config: ExperimentConfig) -> dict[str, Any]:
    """Versions (arlm, torch, numpy, python), machine (platform, CPUs, torch threads, device) and date."""
    import numpy
    import torch

    import arlm

    device = config.device
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    return {
        "versions": {"arlm": arlm.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                     "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": device},
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def command_line(name: str, config: ExperimentConfig) -> str:
    """The ``arlm experiment`` command equivalent to ``config`` (for a run started from Python; the CLI
    passes the command as typed)."""
    parts = ["arlm", "experiment", name]
    if config.quick:
        parts.append("--quick")
    if config.out != default_out(name):
        parts += ["--out", str(config.out)]
    if config.device != "cpu":
        parts += ["--device", config.device]
    parts += ["--threads", str(config.threads), "--seed", str(config.seed)]
    if config.checkpoint is not None:
        parts += ["--checkpoint", str(config.checkpoint)]
    return " ".join(parts)


def _config_dict(config: ExperimentConfig) -> dict[str, Any]:
    out = asdict(config)
    out.pop("show_progress")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Run and render
# ---------------------------------------------------------------------------------------------


def run_experiment(name: str, config: ExperimentConfig, log=None, command: str | None = None) -> Path:
    """Run experiment ``name`` with ``config`` and write results.json, report.md and the plots into
    ``config.out``; returns that folder. Bad input raises an ArlmError before anything is written.

    ``command``: the command line that started the run, as typed (the CLI passes its own); None for a
    run started from Python, which records the equivalent ``arlm experiment`` command and says so."""
    module = experiment_module(name)
    check_device(config.device)
    if config.threads < 1:
        raise ConfigError(f"--threads must be at least 1, not {config.threads}")
    if config.checkpoint is not None and not Path(config.checkpoint).exists():
        raise DataError(f"checkpoint {config.checkpoint} does not exist; pass a model folder that "
                        "`arlm train` wrote")
    out = Path(config.out)
    check_out(name, out)
    check_checkpoint(name, module, config.checkpoint)
    check = getattr(module, "check", None)  # an experiment's own checks, if it has any
    if check is not None:
        check(config)

    import torch

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    load_at_start = protocol.load_average()
    started = time.perf_counter()
    results = module.run(config)
    info = provenance(config)
    info["seconds"] = round(time.perf_counter() - started, 1)
    info["load"] = protocol.load_record(load_at_start, protocol.load_average())
    info["command_from"] = "cli" if command is not None else "python"
    if command is None:
        info["argv"] = list(sys.argv)
    data = {"experiment": name, "summary": module.SUMMARY,
            "command": command if command is not None else command_line(name, config),
            "config": _config_dict(config), "provenance": info, "results": results}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / RESULTS) as f:
        json.dump(data, f, indent=1, allow_nan=True)
        f.write("\n")
    render_report(out)
    if log is not None:
        log(f"{name}: wrote {out / RESULTS}, {out / REPORT} and the plots in {info['seconds']:.0f} s")
    return out


def render_report(folder: str | Path) -> Path:
    """Write ``report.md`` and the plots of ``folder`` again from its ``results.json`` alone."""
    folder = Path(folder)
    data = read_results(folder)
    module = experiment_module(data["experiment"])
    try:
        body = module.render(data["results"], folder)
    except protocol.ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise FormatError(f"{folder / RESULTS} lacks what the {data['experiment']} report needs "
                          f"({type(e).__name__}: {e}); run the experiment again") from e
    with atomic_write(folder / REPORT) as f:
        f.write(_header(data) + "\n" + body.rstrip() + "\n")
    return folder / REPORT


def _header(data: dict[str, Any]) -> str:
    info = data.get("provenance", {})
    versions = info.get("versions", {})
    machine = info.get("machine", {})
    seconds = info.get("seconds")
    took = "" if seconds is None or not math.isfinite(seconds) else f", ran in {seconds:,.0f} s"
    started_from = ""
    if info.get("command_from") == "python":  # not typed: the equivalent command, and what ran instead
        argv = " ".join(info.get("argv") or ["?"])
        started_from = (f" This run was started from Python (`{argv}`), not by this command: it is the "
                        "equivalent command.")
    lines = [
        f"# Experiment `{data['experiment']}`",
        "",
        f"{data.get('summary', '')}",
        "",
        f"Reproduce: `{data.get('command', '')}` (then `arlm report DIR` re-renders this page and its "
        f"plots from `results.json`).{started_from}",
        "",
        f"Run on {info.get('date', '?')}{took}: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; {machine.get('platform', '?')}, {machine.get('cpu_count', '?')} CPUs, "
        f"{machine.get('torch_threads', '?')} torch thread(s), device {machine.get('device', '?')}.",
        "",
    ]
    if isinstance(info.get("load"), dict):  # recorded since the protocol (older results.json lack it)
        lines += [protocol.load_sentence(info["load"]), ""]
    record = data["results"].get("protocol")
    if isinstance(record, dict):
        lines += [protocol.protocol_sentence(record), ""]
    return "\n".join(lines)


def experiment_config(name: str, *, quick: bool = False, out: str | Path | None = None, device: str = "cpu",
                      threads: int = 1, seed: int = 0, checkpoint: str | Path | None = None,
                      show_progress: bool | None = None) -> ExperimentConfig:
    """An :class:`ExperimentConfig` with the command line's defaults (``out``: runs/experiments/NAME)."""
    return ExperimentConfig(out=Path(out) if out is not None else default_out(name), quick=quick,
                            device=device, threads=threads, seed=seed,
                            checkpoint=None if checkpoint is None else Path(checkpoint),
                            show_progress=show_progress)


__all__ = ["check_out", "default_out", "experiment_config", "list_experiments", "read_results",
           "render_report", "run_experiment"]
