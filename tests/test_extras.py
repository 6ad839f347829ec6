"""A test's optional package: skipped where missing, a failure under CI (which installs them all)."""

import pytest

from extras import require

MISSING = "arlm_no_such_module"


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_extra_fails_under_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="pip install it"):
        require(MISSING, reason="pip install it")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_a_missing_extra_skips_elsewhere(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="pip install it"):
        require(MISSING, reason="pip install it")


def test_a_present_extra_is_the_module(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require("json", reason="always there").dumps([1]) == "[1]"
