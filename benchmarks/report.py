"""What every benchmark script shares: replacing its own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from arlm.io import atomic_write

HEADER = "# Benchmarks\n\nMeasured by `benchmarks/*.py`.\n"


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts with ``heading`` (a '## …' line) by ``section``, atomically.

    Other sections stay as they are; a missing section is appended, a missing file is created.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    section = section.rstrip("\n") + "\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    with atomic_write(path) as f:
        f.write(text)
