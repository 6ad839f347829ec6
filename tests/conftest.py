import sys
from pathlib import Path

# tests/ holds shared helpers (toy_models.py, …) that test modules import by name.
sys.path.insert(0, str(Path(__file__).parent))

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription (100x slower).

    Not autouse: a module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class CliResult:
    """What an in-process `arlm …` run left: exit code, standard output, standard error."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture()
def inproc(monkeypatch, capsys):
    """Run `arlm …` in this process through cli.main (fast: no interpreter start, no torch import)."""
    from arlm import cli

    def run(*args, cwd: Path | None = None) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["arlm", *map(str, args)])
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code = 0
        try:
            cli.main()
        except SystemExit as e:
            code = e.code or 0
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
