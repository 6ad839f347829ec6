"""How to decode, as one value: a strategy and every knob, validated once.

The command line builds a :class:`DecodingConfig` from its flags, the server from a request's JSON,
and :func:`~arlm.decode.search.generate`, :func:`~arlm.decode.search.stream` and
:func:`~arlm.decode.search.beam_search` take it (or its fields as keyword arguments). Strategies:

* ``sample``: draw from the processed distribution (temperature τ, then any top-k / top-p / min-p);
* ``greedy``: argmax (τ = 0);
* ``top-k``: sampling with k = 50 unless ``top_k`` says otherwise (Fan et al. 2018);
* ``top-p``: sampling with p = 0.9 unless ``top_p`` says otherwise (Holtzman et al. 2020);
* ``beam``: beam search with ``num_beams`` beams and length penalty α (see :mod:`arlm.decode.search`).

Every bad value is a :class:`DecodingError` (a ConfigError) whose one sentence names the field and a
fix, raised in ``__post_init__``, before any model runs. ``field`` tells a caller which knob was bad
(the CLI turns ``top_p`` into ``--top-p``, the server names it in its 422 answer).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arlm.errors import ConfigError

if TYPE_CHECKING:  # processors import torch; a command line that only parses its options does not
    from arlm.decode.processors import LogitsPipeline

STRATEGIES = ("sample", "greedy", "top-k", "top-p", "beam")
EARLY_STOPPING = (True, False, "never")
DEFAULT_TOP_K, DEFAULT_TOP_P = 50, 0.9  # what the top-k and top-p strategies use unless told
MAX_LENGTH_PENALTY = 10.0  # |α| beyond this overflows |y|^α (and no one ranks hypotheses that way)
# Caps that keep a request's buffers and arithmetic finite (an error names the cap):
MAX_NEW_TOKENS = 1_000_000  # new tokens per sequence (an n-gram has no context to stop it)
MAX_SEQUENCES = 1_000_000  # num_samples (sequences per prompt: statistics draw tens of thousands)
MAX_BEAMS = 1_000  # num_beams
MAX_TOTAL_TOKENS = 100_000_000  # sequences (or beams) × max_new_tokens: the ids buffer of one call (800 MB)
REPETITION_PENALTY_RANGE = (1e-3, 1e3)  # logits ÷ or × the penalty stay finite (1e-320 gave inf/nan)


class DecodingError(ConfigError):
    """A bad decoding setting; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_positive_int(name: str, value: Any, fix: str) -> None:
    """A setting that must be an integer ≥ 1 -> a DecodingError naming it and ``fix``."""
    if not _is_int(value) or value < 1:
        raise DecodingError(name, f"{name} must be an integer ≥ 1, got {value!r}; {fix}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------
# A knob: a field that carries its help text, its bounds and its command-line flag
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """The values of a numeric knob: integers, or finite numbers, in an interval.

    ``must`` is how an error message says it ("an integer ≥ 1", "in (0, 1]"), ``fix`` what it
    suggests; :meth:`json_schema` gives the interval to the server's OpenAPI document.
    """

    integer: bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    must: str = ""
    fix: str = ""

    def admits(self, value: Any) -> bool:
        """Whether ``value`` is of the right kind and inside the interval."""
        if not (_is_int(value) if self.integer else _is_number(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def message(self, name: str, value: Any) -> str:
        """The one sentence of a bad value: "top_p must be in (0, 1], got 1.5; 1 disables it, …"."""
        return f"{name} must be {self.must}, got {value!r}" + (f"; {self.fix}" if self.fix else "")

    def json_schema(self) -> dict[str, Any]:
        """The interval as JSON Schema keywords (minimum, exclusiveMaximum, …)."""
        out: dict[str, Any] = {}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


def knob(default: Any, help: str, *, bounds: Bounds | None = None, flag: str | None = None,
         short: str | None = None, cli: bool = True, cli_default: Any = dataclasses.MISSING) -> Any:
    """A DecodingConfig field with what every front end shows of it.

    ``help``: the one text of ``arlm generate --help`` and of the server's /docs; ``bounds``: its
    interval (checked by DecodingConfig, shown in the OpenAPI document); ``flag`` / ``short``: its
    command-line option (default ``--field-name``; ``cli=False``: the server's only);
    ``cli_default``: the command line's default when it differs from the library's.
    """
    return field(default=default, metadata={
        "help": help, "bounds": bounds, "cli": cli, "short": short,
        "cli_default": default if cli_default is dataclasses.MISSING else cli_default,
        "flag": flag})


def flag_of(name: str) -> str:
    """The command-line option of a knob: ``top_p`` -> ``--top-p``, ``stop_strings`` -> ``--stop``."""
    meta = {f.name: f.metadata for f in dataclasses.fields(DecodingConfig)}.get(name, {})
    return meta.get("flag") or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class DecodingConfig:
    """A decoding strategy and its settings. ``None`` means "the strategy's default"."""

    strategy: str = knob(
        "sample", "sample (temperature and any truncation), greedy (argmax), top-k (default k 50), "
                  "top-p (default p 0.9) or beam (prints the n-best with scores).")
    max_new_tokens: int = knob(
        100, "At most this many new tokens per sample.", cli_default=60,
        bounds=Bounds(integer=True, low=1, high=MAX_NEW_TOKENS,
                      must=f"an integer ≥ 1 and ≤ {MAX_NEW_TOKENS:,}", fix="e.g. 60"))
    temperature: float | None = knob(  # default 1 (greedy: 0)
        None, "≥ 0 (default 1); 0 is greedy. Sampling strategies only.",
        bounds=Bounds(integer=False, low=0, must="a finite number ≥ 0",
                      fix="0 is greedy, 1 is the model's own distribution"))
    top_k: int | None = knob(  # top-k strategy: 50
        None, "Keep the k most probable tokens (0: off).",
        bounds=Bounds(integer=True, low=0, must="an integer ≥ 0",
                      fix="0 disables it, e.g. 50 keeps 50 tokens"))
    top_p: float | None = knob(  # top-p strategy: 0.9
        None, "Nucleus: keep the smallest set with mass ≥ p, p in (0, 1] (1: off).",
        bounds=Bounds(integer=False, low=0, low_open=True, high=1, must="in (0, 1]",
                      fix="1 disables it, e.g. 0.9"))
    min_p: float = knob(
        0.0, "Keep w iff p(w) ≥ min_p · max p (0: off).",
        bounds=Bounds(integer=False, low=0, high=1, must="in [0, 1]", fix="0 disables it, e.g. 0.05"))
    repetition_penalty: float = knob(
        1.0, "> 1 discourages repeats (1: off).",
        bounds=Bounds(integer=False, low=REPETITION_PENALTY_RANGE[0], high=REPETITION_PENALTY_RANGE[1],
                      must=f"> 0, in [{REPETITION_PENALTY_RANGE[0]:g}, {REPETITION_PENALTY_RANGE[1]:g}] "
                           "so that the penalized scores stay finite", fix="1 disables it, e.g. 1.3"))
    no_repeat_ngram_size: int = knob(
        0, "Never repeat an n-gram of this size (0: off).",
        bounds=Bounds(integer=True, low=0, must="an integer ≥ 0", fix="0 disables it"))
    banned: tuple[int, ...] = knob((), "Token ids never generated.", cli=False)
    num_beams: int = knob(
        4, "Beam width K (beam).",
        bounds=Bounds(integer=True, low=1, high=MAX_BEAMS, must=f"an integer ≥ 1 and ≤ {MAX_BEAMS:,}",
                      fix="e.g. 4"))
    length_penalty: float = knob(
        1.0, "Beam score s/|y|^α: 0 raw log-prob, 1 per-token average.",
        bounds=Bounds(integer=False, low=-MAX_LENGTH_PENALTY, high=MAX_LENGTH_PENALTY,
                      must=f"a number in [-{MAX_LENGTH_PENALTY:g}, {MAX_LENGTH_PENALTY:g}]",
                      fix="1.0 averages per token, 0 is raw log p"))
    early_stopping: bool | str = knob(  # HF's semantics
        True, "Beam: true, false or 'never'.", cli=False)
    num_samples: int | None = knob(  # default 1; beam: the n-best size, default K
        None, "Samples to draw (default 1); beam: n-best size (default K).", short="-n",
        bounds=Bounds(integer=True, low=1, high=MAX_SEQUENCES,
                      must=f"an integer ≥ 1 and ≤ {MAX_SEQUENCES:,}"))
    stop_strings: tuple[str, ...] = knob(  # sampling/greedy only
        (), "Stop a sample once its text contains this string (repeatable; kept in the output).",
        flag="--stop")
    seed: int | None = knob(
        0, "The same seed gives the same samples.",
        bounds=Bounds(integer=True, low=-(2**63), high=2**64, high_open=True,
                      must="a 64-bit integer or none"))

    def __post_init__(self) -> None:
        # normalise sequences given as lists (JSON, the CLI) to tuples
        if isinstance(self.stop_strings, str):
            object.__setattr__(self, "stop_strings", (self.stop_strings,))
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        object.__setattr__(self, "banned", tuple(self.banned))
        self._check()

    def _check(self) -> None:
        for f in dataclasses.fields(self):  # each field on its own, in order
            value, bounds = getattr(self, f.name), f.metadata["bounds"]
            if bounds is not None and not (value is None and f.name in NULLABLE) and not bounds.admits(value):
                raise DecodingError(f.name, bounds.message(f.name, value))
            self._check_value(f.name, value)
        self._check_together()

    @staticmethod
    def _check_value(name: str, value: Any) -> None:
        """The fields that are not numbers in an interval."""
        if name == "strategy" and value not in STRATEGIES:
            raise DecodingError("strategy", f"unknown strategy {value!r}; use one of {', '.join(STRATEGIES)}")
        if name == "banned" and not all(_is_int(b) and b >= 0 for b in value):
            raise DecodingError("banned", f"banned must be token ids (integers ≥ 0), got {list(value)!r}")
        if name == "early_stopping" and (value not in EARLY_STOPPING or not isinstance(value, bool | str)):
            raise DecodingError("early_stopping", f"early_stopping must be True, False or 'never', got "
                                                  f"{value!r}")
        if name == "stop_strings" and any(not isinstance(s, str) or not s for s in value):
            raise DecodingError("stop_strings", "stop_strings holds an empty string or a non-text value; "
                                                "remove it (an empty string would stop every row at once)")

    def _check_together(self) -> None:
        """The settings that exclude each other."""
        def bad(field: str, message: str) -> DecodingError:
            return DecodingError(field, message)

        if self.strategy == "top-k" and self.top_k == 0:
            raise bad("top_k", "the top-k strategy needs top_k ≥ 1 (e.g. 50); 0 would disable it")
        if self.strategy == "beam":
            if self.num_samples is not None and self.num_samples > self.num_beams:
                raise bad("num_samples", f"beam search returns at most num_beams ({self.num_beams}) "
                                         f"hypotheses, num_samples is {self.num_samples}; lower it or "
                                         "raise num_beams")
            if self.stop_strings:
                raise bad("stop_strings", "stop_strings work with the sampling and greedy strategies, "
                                          "not beam; drop them or use the greedy strategy")
            if self.temperature not in (None, 1.0) or self.top_k or self.top_p not in (None, 1.0) \
                    or self.min_p:
                field = next(f for f, on in (("temperature", self.temperature not in (None, 1.0)),
                                             ("top_k", bool(self.top_k)),
                                             ("top_p", self.top_p not in (None, 1.0)),
                                             ("min_p", True)) if on)
                raise bad(field, "beam search does not sample: temperature, top_k, top_p and min_p do "
                                 "not apply; drop them or pick a sampling strategy")

        rows = max(self.sequences_per_prompt, self.num_beams if self.strategy == "beam" else 1)
        if rows * self.max_new_tokens > MAX_TOTAL_TOKENS:
            raise bad("max_new_tokens", f"{rows:,} sequences × max_new_tokens {self.max_new_tokens:,} is "
                                        f"more than the {MAX_TOTAL_TOKENS:,} new tokens one call may make; "
                                        "lower max_new_tokens or the number of sequences")

    # ----- what the settings amount to ----------------------------------------------------------

    @property
    def greedy(self) -> bool:
        """Argmax decoding: the greedy strategy, or temperature 0."""
        return self.strategy == "greedy" or self.temperature == 0

    @property
    def effective_temperature(self) -> float:
        return 0.0 if self.greedy else (1.0 if self.temperature is None else float(self.temperature))

    @property
    def effective_top_k(self) -> int:
        return self.top_k if self.top_k is not None else (DEFAULT_TOP_K if self.strategy == "top-k" else 0)

    @property
    def effective_top_p(self) -> float:
        return self.top_p if self.top_p is not None else (DEFAULT_TOP_P if self.strategy == "top-p" else 1.0)

    @property
    def sequences_per_prompt(self) -> int:
        """num_samples, or its default: 1 when sampling, K for beam search."""
        if self.num_samples is not None:
            return self.num_samples
        return self.num_beams if self.strategy == "beam" else 1

    def processors(self) -> LogitsPipeline:
        """The logits processors these settings make (beam search: the penalties and bans only)."""
        from arlm.decode.processors import build_processors

        if self.strategy == "beam":
            return build_processors(1.0, 0, 1.0, 0.0, self.repetition_penalty,
                                    self.no_repeat_ngram_size, self.banned)
        return build_processors(self.effective_temperature, self.effective_top_k, self.effective_top_p,
                                self.min_p, self.repetition_penalty, self.no_repeat_ngram_size,
                                self.banned)

    def replace(self, **changes: Any) -> DecodingConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        out["banned"], out["stop_strings"] = list(self.banned), list(self.stop_strings)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DecodingConfig:
        """From JSON-like data; an unknown key is a DecodingError naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise DecodingError(key, f"unknown decoding setting {key!r}; the settings are "
                                         f"{', '.join(names)}")
        return cls(**values)


KNOB_TYPES: dict[str, Any] = typing.get_type_hints(DecodingConfig)  # field -> its type
# the fields where None means "the strategy's default"
NULLABLE = frozenset(n for n, t in KNOB_TYPES.items() if type(None) in typing.get_args(t))


def decoding_config(config: DecodingConfig | None, settings: dict[str, Any],
                    strategy: str | None = None) -> DecodingConfig:
    """``config`` (or the defaults) with keyword ``settings`` applied; what the search functions call.

    ``strategy``: the strategy the caller implements (``beam_search`` passes "beam"); a config of
    another family of strategy is refused.
    """
    base = config if config is not None else DecodingConfig(
        strategy=strategy or "sample", max_new_tokens=settings.get("max_new_tokens", 100))
    if settings:
        base = DecodingConfig.from_dict({**{f.name: getattr(base, f.name)
                                            for f in dataclasses.fields(base)}, **settings})
    if strategy == "beam" and base.strategy != "beam":
        raise DecodingError("strategy", f"beam_search needs strategy='beam', got {base.strategy!r}; "
                                        "use generate for sampling and greedy decoding")
    if strategy != "beam" and base.strategy == "beam":
        raise DecodingError("strategy", "generate and stream sample or decode greedily; use beam_search "
                                        "for strategy='beam'")
    return base


def stop_list(stop: str | Sequence[str]) -> tuple[str, ...]:
    """One stop string or several -> a tuple."""
    return (stop,) if isinstance(stop, str) else tuple(stop)
