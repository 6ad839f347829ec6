"""Typed errors for bad user input.

Library code raises an :class:`ArlmError` subclass with one clear sentence that names the problem and
the fix. The CLI turns it into a one-line message and exit code 2, never a traceback.
"""


class ArlmError(ValueError):
    """Bad input from the user: a file, a name, a number or a combination that cannot work."""


class DataError(ArlmError):
    """A corpus, file, split or cache that cannot be read or is empty."""


class ConfigError(ArlmError):
    """An unknown name (smoothing, tokenizer, corpus) or an out-of-range setting."""


class FormatError(ArlmError):
    """A file in a known format (ARPA, tokenizer JSON, model folder) that is malformed."""


class MismatchError(ArlmError):
    """Two things that must belong together do not (a model and a tokenizer, a checkpoint and a run)."""


class UnwritableError(ArlmError):
    """An output path (model folder, ARPA file, cache) whose folder cannot be created or written."""


class Interrupted(BaseException):
    """The process was told to stop (Ctrl-C: SIGINT, or SIGTERM) in the middle of a command.

    Not an :class:`ArlmError`, nor an ``Exception``: no ``except Exception`` may swallow it. Code that
    knows what is on disk (the trainer: the last checkpoint and how to resume) adds a note
    (``add_note``); the CLI prints the notes on one line and exits with 128 + the signal's number
    (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
