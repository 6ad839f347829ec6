"""The parts of OpenAI's completions that are arlm's own arithmetic: stop strings cut as OpenAI cuts
them, piece by piece, and the seeds of n choices."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.serve.completions import SEED_SPAN, StopText, choice_seed

pieces = st.lists(st.text(alphabet="ab c", max_size=4), max_size=12)
stops = st.lists(st.text(alphabet="ab c", min_size=1, max_size=3), max_size=3)


def cut(text: str, stop_strings: list[str]) -> str:
    """The text before the first occurrence of any stop string (all of it when none occurs)."""
    found = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    return text[:min(found)] if found else text


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(pieces, stops)
def test_stop_text_shows_the_text_before_the_first_stop_string(parts, stop_strings):
    visible = StopText(tuple(stop_strings))
    expected = cut("".join(parts), stop_strings)
    shown = ""
    for part in parts:
        shown += visible.add(part)
        assert expected.startswith(shown)  # never shows what a stop string may still take back
    shown += visible.flush()
    assert shown == expected
    assert visible.stopped == (expected != "".join(parts) or any(s in "".join(parts) for s in stop_strings))


def test_stop_text_holds_back_a_possible_stop_string():
    visible = StopText(("END",))
    assert visible.add("the E") == "the "  # "E" may start "END"
    assert visible.add("N") == ""
    assert visible.add("x") == "ENx"  # it did not
    assert visible.add("yEND more") == "y" and visible.stopped
    assert visible.add("ignored") == "" and visible.flush() == ""


def test_choice_seeds_follow_the_request_seed_and_wrap():
    assert [choice_seed(40, i) for i in range(3)] == [40, 41, 42]
    assert choice_seed(SEED_SPAN - 1, 1) == 0 and choice_seed(-5, 2) == -3
