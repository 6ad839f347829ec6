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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arlm.decode.processors import LogitsPipeline, build_processors
from arlm.errors import ConfigError

STRATEGIES = ("sample", "greedy", "top-k", "top-p", "beam")
EARLY_STOPPING = (True, False, "never")
DEFAULT_TOP_K, DEFAULT_TOP_P = 50, 0.9  # what the top-k and top-p strategies use unless told
MAX_LENGTH_PENALTY = 10.0  # |α| beyond this overflows |y|^α (and no one ranks hypotheses that way)


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


@dataclass(frozen=True)
class DecodingConfig:
    """A decoding strategy and its settings. ``None`` means "the strategy's default"."""

    strategy: str = "sample"
    max_new_tokens: int = 100  # new tokens per sequence at most
    temperature: float | None = None  # ≥ 0; default 1 (greedy: 0)
    top_k: int | None = None  # keep the k most probable tokens; 0: off (top-k strategy: 50)
    top_p: float | None = None  # nucleus mass p in (0, 1]; 1: off (top-p strategy: 0.9)
    min_p: float = 0.0  # keep w iff p(w) ≥ min_p · max p; 0: off
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the sequence; 1: off
    no_repeat_ngram_size: int = 0  # never repeat an n-gram of this size; 0: off
    banned: tuple[int, ...] = ()  # token ids never generated
    num_beams: int = 4  # beam: K
    length_penalty: float = 1.0  # beam: rank by s / |y|^α
    early_stopping: bool | str = True  # beam: True, False or "never" (HF's semantics)
    num_samples: int | None = None  # sequences per prompt (default 1; beam: the n-best size, default K)
    stop_strings: tuple[str, ...] = ()  # sampling/greedy: stop once the new text contains one
    seed: int | None = 0  # the same seed gives the same samples

    def __post_init__(self) -> None:
        # normalise sequences given as lists (JSON, the CLI) to tuples
        if isinstance(self.stop_strings, str):
            object.__setattr__(self, "stop_strings", (self.stop_strings,))
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        object.__setattr__(self, "banned", tuple(self.banned))
        self._check()

    def _check(self) -> None:
        def bad(field: str, message: str) -> DecodingError:
            return DecodingError(field, message)

        if self.strategy not in STRATEGIES:
            raise bad("strategy", f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise bad("max_new_tokens", f"max_new_tokens must be an integer ≥ 1, "
                                        f"got {self.max_new_tokens!r}; "
                                        "e.g. 60")
        t = self.temperature
        if t is not None and not (_is_number(t) and t >= 0):
            raise bad("temperature", f"temperature must be a finite number ≥ 0, got {t!r}; 0 is greedy, "
                                     "1 is the model's own distribution")
        if self.top_k is not None and not (_is_int(self.top_k) and self.top_k >= 0):
            raise bad("top_k", f"top_k must be an integer ≥ 0, got {self.top_k!r}; 0 disables it, "
                               "e.g. 50 keeps 50 tokens")
        p = self.top_p
        if p is not None and not (_is_number(p) and 0 < p <= 1):
            raise bad("top_p", f"top_p must be in (0, 1], got {p!r}; 1 disables it, e.g. 0.9")
        if not (_is_number(self.min_p) and 0 <= self.min_p <= 1):
            raise bad("min_p", f"min_p must be in [0, 1], got {self.min_p!r}; 0 disables it, e.g. 0.05")
        if not (_is_number(self.repetition_penalty) and self.repetition_penalty > 0):
            raise bad("repetition_penalty", f"repetition_penalty must be > 0, got "
                                            f"{self.repetition_penalty!r}; 1 disables it, e.g. 1.3")
        if not (_is_int(self.no_repeat_ngram_size) and self.no_repeat_ngram_size >= 0):
            raise bad("no_repeat_ngram_size", f"no_repeat_ngram_size must be an integer ≥ 0, got "
                                              f"{self.no_repeat_ngram_size!r}; 0 disables it")
        if not all(_is_int(b) and b >= 0 for b in self.banned):
            raise bad("banned", f"banned must be token ids (integers ≥ 0), got {list(self.banned)!r}")
        if not _is_int(self.num_beams) or self.num_beams < 1:
            raise bad("num_beams", f"num_beams must be an integer ≥ 1, got {self.num_beams!r}; e.g. 4")
        if not (_is_number(self.length_penalty) and abs(self.length_penalty) <= MAX_LENGTH_PENALTY):
            raise bad("length_penalty", f"length_penalty must be a number in [-{MAX_LENGTH_PENALTY:g}, "
                                        f"{MAX_LENGTH_PENALTY:g}], got {self.length_penalty!r}; 1.0 averages "
                                        "per token, 0 is raw log p")
        if self.early_stopping not in EARLY_STOPPING or not isinstance(self.early_stopping, bool | str):
            raise bad("early_stopping", f"early_stopping must be True, False or 'never', got "
                                        f"{self.early_stopping!r}")
        if self.num_samples is not None and not (_is_int(self.num_samples) and self.num_samples >= 1):
            raise bad("num_samples", f"num_samples must be an integer ≥ 1, got {self.num_samples!r}")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise bad("stop_strings", "stop_strings holds an empty string or a non-text value; remove it "
                                      "(an empty string would stop every row at once)")
        if self.seed is not None and not (_is_int(self.seed) and -(2**63) <= self.seed < 2**64):
            raise bad("seed", f"seed must be a 64-bit integer or none, got {self.seed!r}")
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
