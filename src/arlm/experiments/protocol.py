"""The protocol: the rules every experiment follows, so that its report says only what its numbers show.

1. **Choose on validation, read the test split once, at the end.** Configs, hyperparameters, λ and
   checkpoints are chosen on the validation split; the test split is read in one final step, after
   which nothing more is chosen. A :class:`Protocol` hands out the run's splits wrapped in
   :class:`Guarded`, which counts every read and refuses a read of the test split outside
   ``with protocol.final_test() as test:``; ``protocol.record()`` (what was chosen, on which split, how
   often the test split was read, the budget) goes into results.json as ``results["protocol"]``.
2. **Equal budgets in one stated unit.** A :class:`Budget` has one unit for the whole experiment
   (steps, tokens or CPU seconds), records what each arm spent, and refuses to compare arms whose
   budgets differ (:meth:`Budget.check_equal`).
3. **Seeds and intervals.** :func:`summarize`: mean ± std over seeds and a 95 % Student-t interval of
   the mean; :func:`compare_paired`: the per-seed differences A − B, their 95 % interval (paired t) and
   the verdict "A lower", "B lower" or "not distinguishable"; :func:`needs_more_seeds`: a difference
   smaller than 5× the seed spread needs at least 3 seeds (ProtocolError with fewer).
4. **Load.** :func:`load_average` at the start and the end of a run (the runner records both,
   :func:`load_record`); speed figures (seconds, tokens/s) are invalid when the 1-minute load average
   exceeded the core count (:func:`speed_valid`, :func:`mark_speed`).
5. **Reproduce.** The runner records the command that made results.json as it was typed
   (:func:`arlm.experiments.runner.run_experiment`'s ``command``), not one written by hand.

Report sentences are written from the numbers (:func:`summary_text`, :func:`comparison_sentence`,
:func:`protocol_sentence`, :func:`load_sentence`): when the numbers change, the conclusion changes with
them. docs/experiments.md ("The protocol") states the rules and which experiments follow them.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arlm.errors import ArlmError

SELECTION_SPLIT = "val"  # the split every choice is made on
TEST_SPLIT = "test"  # the split read once, in the final step
BUDGET_UNITS = ("steps", "tokens", "cpu_seconds")
MIN_SEEDS = 3  # a conclusion that rests on a small difference needs at least this many seeds
SPREAD_FACTOR = 5.0  # "small": a difference below SPREAD_FACTOR × the seed-to-seed standard deviation
A_LOWER, B_LOWER, NOT_DISTINGUISHABLE = "A lower", "B lower", "not distinguishable"


class ProtocolError(ArlmError):
    """An experiment broke the protocol: it read the test split before its final step (or twice), made
    a choice on the wrong split or after the final test, compared unequal budgets, or drew a conclusion
    from too few seeds."""


# ---------------------------------------------------------------------------------------------
# Rule 1: choose on validation, read the test split once, at the end
# ---------------------------------------------------------------------------------------------


class Guarded:
    """A split (an ``EncodedSplit``, a list of lines, an array: any object) whose reads are counted.

    Each attribute read, ``len``, iteration, indexing and ``np.asarray`` of the wrapper is one read:
    ``check(name)`` is called first (it may refuse the read by raising), then the read is counted and
    passed on to the split. :func:`reads` says how many reads a wrapper has seen.
    """

    __slots__ = ("_check", "_name", "_reads", "_split")

    def __init__(self, split: Any, name: str, check: Callable[[str], None] | None = None) -> None:
        self._split = split
        self._name = name
        self._check = check
        self._reads = 0

    def _read(self) -> Any:
        if self._check is not None:
            self._check(self._name)
        self._reads += 1
        return self._split

    def __getattr__(self, attr: str) -> Any:  # only attributes the wrapper itself lacks
        if attr.startswith("_"):  # e.g. copy/pickle probing the wrapper: not a read of the split
            raise AttributeError(attr)
        return getattr(self._read(), attr)

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._read())

    def __getitem__(self, index: Any) -> Any:
        return self._read()[index]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        import numpy as np

        array = np.asarray(self._read())
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:  # not a read
        return f"Guarded({self._name!r}, reads={self._reads})"


def reads(split: Guarded) -> int:
    """How many times ``split`` has been read (refused reads are not counted)."""
    return split._reads


class Protocol:
    """One run's splits and choices: any split but the test split is read freely; the test split only
    inside ``with protocol.final_test() as test:``, which may happen once, and after which no choice is
    recorded.

    ``splits`` maps names ("train", "val", "test") to any split objects; each is handed out wrapped in
    :class:`Guarded` by :meth:`split`. ``budget_unit`` (steps, tokens or cpu_seconds) starts
    :attr:`budget`, whose per-arm spending :meth:`record` includes.
    """

    def __init__(self, splits: Mapping[str, Any], *, selection: str = SELECTION_SPLIT,
                 test: str = TEST_SPLIT, budget_unit: str | None = None) -> None:
        for role, name in (("selection", selection), ("test", test)):
            if name not in splits:
                raise ProtocolError(f"the protocol's {role} split {name!r} is not among the splits given "
                                    f"({', '.join(splits) or 'none'}); pass it")
        if selection == test:
            raise ProtocolError(f"choices cannot be made on the test split {test!r}; choose on "
                                "a validation split")
        self.selection = selection
        self.test = test
        self._splits = {name: Guarded(split, name, self._check_read) for name, split in splits.items()}
        self._in_final_test = False
        self._test_reads = 0  # final-test steps taken: 0 before, 1 after
        self._choices: dict[str, Any] = {}
        self._candidates: dict[str, int] = {}
        self.budget = Budget(budget_unit) if budget_unit is not None else None

    def split(self, name: str) -> Guarded:
        """The split ``name``, wrapped: reading it is free unless it is the test split."""
        if name not in self._splits:
            raise ProtocolError(f"no split {name!r} in this protocol; it has {', '.join(self._splits)}")
        return self._splits[name]

    def _check_read(self, name: str) -> None:
        if name != self.test or self._in_final_test:
            return
        if self._test_reads:
            raise ProtocolError(f"the {name!r} split was read again after the final test; read it once, "
                                "inside `with protocol.final_test()`, for every arm at the same time")
        raise ProtocolError(f"the {name!r} split was read before the final test; make every choice on "
                            f"{self.selection!r} and read {name!r} only inside `with protocol.final_test()`")

    def choose(self, name: str, value: Any, *, on: str | None = None, candidates: int | None = None) -> Any:
        """Record the choice ``name = value`` (a config, a hyperparameter, λ, a checkpoint), made on the
        split ``on`` (default: the selection split) among ``candidates`` options; returns ``value``.
        ProtocolError for a choice on any other split or after the final test."""
        on = self.selection if on is None else on
        if on != self.selection:
            raise ProtocolError(f"{name!r} was chosen on {on!r}; choices are made on {self.selection!r} "
                                "only")
        if self._test_reads:
            raise ProtocolError(f"{name!r} was chosen after the final test; choices are frozen once the "
                                f"{self.test!r} split has been read")
        self._choices[name] = value
        if candidates is not None:
            self._candidates[name] = int(candidates)
        return value

    @property
    def choices(self) -> dict[str, Any]:
        """The choices recorded so far, by name."""
        return dict(self._choices)

    @contextlib.contextmanager
    def final_test(self) -> Iterator[Guarded]:
        """The one step that reads the test split: every arm's final evaluation happens inside it.
        Choices are frozen from its start; a second final test is refused."""
        if self._test_reads:
            raise ProtocolError(f"the final test was already taken; the {self.test!r} split is read once")
        self._test_reads += 1
        self._in_final_test = True
        try:
            yield self._splits[self.test]
        finally:
            self._in_final_test = False

    def record(self) -> dict[str, Any]:
        """What results.json keeps: ``{"chosen_on", "test_reads", "choices"[, "candidates"][, "budget"]}``."""
        out: dict[str, Any] = {"chosen_on": self.selection, "test_reads": self._test_reads,
                               "choices": dict(self._choices)}
        if self._candidates:
            out["candidates"] = dict(self._candidates)
        if self.budget is not None:
            out["budget"] = self.budget.record()
        return out


# ---------------------------------------------------------------------------------------------
# Rule 2: equal budgets in one stated unit
# ---------------------------------------------------------------------------------------------


class Budget:
    """One unit for an experiment (steps, tokens or cpu_seconds) and what each arm spent in it."""

    def __init__(self, unit: str) -> None:
        if unit not in BUDGET_UNITS:
            raise ProtocolError(f"unknown budget unit {unit!r}; choose one of {', '.join(BUDGET_UNITS)}")
        self.unit = unit
        self.spent: dict[str, float] = {}

    def spend(self, arm: str, amount: float) -> None:
        """Add ``amount`` (in this budget's unit) to what ``arm`` has spent."""
        self.spent[arm] = self.spent.get(arm, 0) + amount

    @contextlib.contextmanager
    def measure(self, arm: str) -> Iterator[None]:
        """Add the process's CPU seconds (all threads, ``time.process_time``) spent in the block to
        ``arm``; only for a budget in cpu_seconds."""
        if self.unit != "cpu_seconds":
            raise ProtocolError(f"this budget is in {self.unit}, not cpu_seconds; spend() what each arm "
                                "used instead of measuring seconds")
        start = time.process_time()
        try:
            yield
        finally:
            self.spend(arm, time.process_time() - start)

    def check_equal(self, arms: Sequence[str] | None = None, *, tolerance: float | None = None) -> None:
        """ProtocolError unless the ``arms`` compared (default: all) spent the same budget: within
        ``tolerance`` of the largest, relative (default 0 for steps and tokens, 0.05 for CPU seconds)."""
        arms = list(self.spent) if arms is None else list(arms)
        missing = [arm for arm in arms if arm not in self.spent]
        if missing:
            raise ProtocolError(f"no budget recorded for {', '.join(missing)}; spend() each arm's "
                                f"{self.unit} before comparing")
        if tolerance is None:
            tolerance = 0.05 if self.unit == "cpu_seconds" else 0.0
        amounts = [self.spent[arm] for arm in arms]
        if amounts and max(amounts) - min(amounts) > tolerance * max(amounts):
            spent = ", ".join(f"{arm} {self.spent[arm]:,.6g}" for arm in arms)
            raise ProtocolError(f"the arms compared spent unequal budgets in {self.unit} ({spent}); give "
                                "them the same budget")

    def record(self) -> dict[str, Any]:
        """``{"unit", "per_arm"}`` for results.json."""
        return {"unit": self.unit, "per_arm": dict(self.spent)}


# ---------------------------------------------------------------------------------------------
# Rule 3: seeds, intervals and verdicts
# ---------------------------------------------------------------------------------------------

# Student's t, 97.5 % quantile (the two-sided 95 % interval), by degrees of freedom 1..29 (n ≤ 30):
# what t_975 uses where scipy is not installed
T_975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
         2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
         2.0595, 2.0555, 2.0518, 2.0484, 2.0452)
Z_975 = 1.959963984540054


def t_975_table(dof: int) -> float:
    """Student's t 97.5 % quantile without scipy: the table up to 29 degrees of freedom, beyond it the
    Cornish–Fisher expansion in 1/dof (within 1e-4 from 30 on)."""
    if dof < 1:
        raise ProtocolError(f"a t interval needs at least 1 degree of freedom (2 seeds), not {dof}")
    if dof <= len(T_975):
        return T_975[dof - 1]
    z = Z_975
    return (z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * dof ** 3))


def t_975(dof: int) -> float:
    """Student's t 97.5 % quantile for ``dof`` degrees of freedom: scipy's where it is installed (it comes
    with scikit-learn), else :func:`t_975_table`."""
    if dof < 1:
        raise ProtocolError(f"a t interval needs at least 1 degree of freedom (2 seeds), not {dof}")
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return t_975_table(dof)
    return float(student_t.ppf(0.975, dof))


@dataclass(frozen=True)
class Summary:
    """Numbers over seeds: mean, sample standard deviation (n - 1) and the 95 % t interval of the mean
    [low, high]; std, low and high are NaN with one value."""

    values: tuple[float, ...]
    mean: float
    std: float
    low: float
    high: float

    @property
    def n(self) -> int:
        """Number of seeds."""
        return len(self.values)

    @property
    def half_width(self) -> float:
        """Half the 95 % interval: mean ± half_width."""
        return (self.high - self.low) / 2


def summarize(values: Sequence[float]) -> Summary:
    """Mean ± std of ``values`` (one per seed) and the 95 % interval of the mean, mean ± t · std / √n."""
    values = tuple(float(v) for v in values)
    n = len(values)
    if n == 0:
        raise ProtocolError("no values to summarize; run at least one seed")
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(values, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_975(n - 1) * std / math.sqrt(n)
    return Summary(values, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """Arms A and B over the same seeds: each arm's summary, the per-seed differences A − B and the
    verdict (:data:`A_LOWER`, :data:`B_LOWER` or :data:`NOT_DISTINGUISHABLE`)."""

    name_a: str
    name_b: str
    a: Summary
    b: Summary
    difference: Summary  # of a[i] - b[i]
    verdict: str


def compare_paired(a: Sequence[float], b: Sequence[float], name_a: str = "A",
                   name_b: str = "B") -> Comparison:
    """Paired comparison of two arms run with the same seeds (``a[i]`` and ``b[i]`` share seed i): the
    95 % t interval of the mean difference A − B decides. Entirely below 0: "A lower"; above: "B lower";
    containing 0, or one seed (no interval): "not distinguishable"."""
    if len(a) != len(b):
        raise ProtocolError(f"a paired comparison needs one value per seed in each arm, not {len(a)} for "
                            f"{name_a} and {len(b)} for {name_b}; run both arms with the same seeds")
    difference = summarize([x - y for x, y in zip(a, b, strict=True)])
    if difference.n >= 2 and difference.high < 0:
        verdict = A_LOWER
    elif difference.n >= 2 and difference.low > 0:
        verdict = B_LOWER
    else:
        verdict = NOT_DISTINGUISHABLE
    return Comparison(name_a, name_b, summarize(a), summarize(b), difference, verdict)


def verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """"A lower", "B lower" or "not distinguishable": :func:`compare_paired`'s verdict."""
    return compare_paired(a, b).verdict


def needs_more_seeds(difference: float, spread: float, num_seeds: int) -> bool:
    """Whether a conclusion that rests on ``difference`` needs several seeds: True when |difference| is
    smaller than 5× ``spread`` (the seed-to-seed standard deviation), and then ProtocolError unless at
    least 3 seeds were run. An unknown spread (NaN: one seed) is refused too."""
    if math.isnan(spread):
        raise ProtocolError("the seed spread is unknown (one seed); run at least "
                            f"{MIN_SEEDS} seeds to know whether the difference exceeds it")
    small = abs(difference) < SPREAD_FACTOR * spread
    if small and num_seeds < MIN_SEEDS:
        raise ProtocolError(f"the difference {difference:.4g} is smaller than {SPREAD_FACTOR:g}× the seed "
                            f"spread {spread:.4g}, and {num_seeds} seed(s) were run; run at least "
                            f"{MIN_SEEDS} seeds")
    return small


def summary_text(s: Summary, unit: str = "", digits: int = 3) -> str:
    """'2.000 ± 1.000 bits/char (mean ± std of 3 seeds; 95 % interval [-0.484, 4.484])', or with one
    seed '2.000 bits/char (1 seed: no spread, no interval)'."""
    unit = f" {unit}" if unit else ""
    if s.n == 1:
        return f"{s.mean:.{digits}f}{unit} (1 seed: no spread, no interval)"
    return (f"{s.mean:.{digits}f} ± {s.std:.{digits}f}{unit} (mean ± std of {s.n} seeds; 95 % interval "
            f"[{s.low:.{digits}f}, {s.high:.{digits}f}])")


def comparison_sentence(c: Comparison, unit: str = "", digits: int = 3) -> str:
    """The report's sentence for a comparison, written from its numbers: 'A is lower than B by X unit
    (95 % interval [l, h], paired over n seeds; A m ± s, B m ± s).' or 'A and B are not distinguishable:
    …'."""
    u = f" {unit}" if unit else ""
    d = c.difference
    f = f".{digits}f"
    arms = (f"{c.name_a} {c.a.mean:{f}} ± {c.a.std:{f}}, {c.name_b} {c.b.mean:{f}} ± {c.b.std:{f}}"
            if d.n >= 2 else f"{c.name_a} {c.a.mean:{f}}, {c.name_b} {c.b.mean:{f}}")
    if c.verdict == A_LOWER:
        return (f"{c.name_a} is lower than {c.name_b} by {-d.mean:{f}}{u} (95 % interval [{-d.high:{f}}, "
                f"{-d.low:{f}}], paired over {d.n} seeds; {arms}).")
    if c.verdict == B_LOWER:
        return (f"{c.name_b} is lower than {c.name_a} by {d.mean:{f}}{u} (95 % interval [{d.low:{f}}, "
                f"{d.high:{f}}], paired over {d.n} seeds; {arms}).")
    if d.n < 2:
        return (f"{c.name_a} and {c.name_b} are not distinguishable from one seed: {c.name_a} − "
                f"{c.name_b} = {d.mean:+{f}}{u}, and one seed gives no interval ({arms}).")
    return (f"{c.name_a} and {c.name_b} are not distinguishable: {c.name_a} − {c.name_b} = "
            f"{d.mean:+{f}}{u}, whose 95 % interval [{d.low:+{f}}, {d.high:+{f}}] contains 0 (paired over "
            f"{d.n} seeds; {arms}).")


def protocol_sentence(record: Mapping[str, Any]) -> str:
    """One sentence from a :meth:`Protocol.record`: what was chosen on which split, how often the test
    split was read, and the budget per arm."""
    choices = record.get("choices", {})
    candidates = record.get("candidates", {})
    chosen = "; ".join(f"{name} = {value}" + (f" (of {candidates[name]})" if name in candidates else "")
                       for name, value in choices.items())
    reads = record.get("test_reads", 0)
    parts = [f"chosen on {record.get('chosen_on', '?')}: {chosen}" if chosen else
             f"nothing chosen (choices would be made on {record.get('chosen_on', '?')})",
             "test split read once, at the end" if reads == 1 else f"test split read {reads} times"]
    budget = record.get("budget")
    if budget:
        spent = ", ".join(f"{arm} {amount:,.6g}" for arm, amount in budget["per_arm"].items())
        parts.append(f"budget in {budget['unit'].replace('_', ' ')}: {spent}")
    return "Protocol: " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------------------------
# Rule 4: the load, and speed figures it invalidates
# ---------------------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    """The load averages over 1, 5 and 15 minutes (``os.getloadavg``); None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def speed_valid(start: Sequence[float] | None, end: Sequence[float] | None,
                cpu_count: int | None) -> bool | None:
    """False when the 1-minute load average at the start or at the end exceeded ``cpu_count`` (other
    work was competing for the cores, so seconds and tokens/s are not this run's); True when neither
    did; None when nothing is known."""
    known = [loads[0] for loads in (start, end) if loads]
    if not known or not cpu_count:
        return None
    return max(known) <= cpu_count


def load_record(start: Sequence[float] | None, end: Sequence[float] | None,
                cpu_count: int | None = None) -> dict[str, Any]:
    """``{"start", "end", "cpu_count", "speed_valid"}`` for results.json's provenance (``cpu_count``
    defaults to ``os.cpu_count()``)."""
    cpu_count = os.cpu_count() if cpu_count is None else cpu_count
    return {"start": None if start is None else list(start), "end": None if end is None else list(end),
            "cpu_count": cpu_count, "speed_valid": speed_valid(start, end, cpu_count)}


def load_sentence(load: Mapping[str, Any]) -> str:
    """The report's sentence for a :func:`load_record`."""
    start, end, cpus = load.get("start"), load.get("end"), load.get("cpu_count")

    def at(loads: Sequence[float] | None) -> str:
        return "unknown" if not loads else f"{loads[0]:.2f}"

    text = f"Load average (1 min): {at(start)} at the start, {at(end)} at the end, on {cpus} CPUs"
    valid = load.get("speed_valid")
    if valid is False:
        return text + ("; it exceeded the core count, so this run's speed figures (seconds, tokens/s) are "
                       "invalid: other work shared the cores.")
    if valid is None:
        return text + "; whether speed figures are valid is unknown."
    return text + "."


def mark_speed(text: str, load: Mapping[str, Any] | None) -> str:
    """A speed figure as a report shows it: ``text``, with ' (invalid: load > cores)' appended when the
    run's :func:`load_record` says the load exceeded the core count."""
    if load is not None and load.get("speed_valid") is False:
        return f"{text} (invalid: load > cores)"
    return text


__all__ = ["A_LOWER", "BUDGET_UNITS", "B_LOWER", "MIN_SEEDS", "NOT_DISTINGUISHABLE", "SELECTION_SPLIT",
           "SPREAD_FACTOR", "TEST_SPLIT", "Budget", "Comparison", "Guarded", "Protocol", "ProtocolError",
           "Summary", "compare_paired", "comparison_sentence", "load_average", "load_record", "load_sentence",
           "mark_speed", "needs_more_seeds", "protocol_sentence", "reads", "speed_valid", "summarize",
           "summary_text", "t_975", "t_975_table", "verdict"]
