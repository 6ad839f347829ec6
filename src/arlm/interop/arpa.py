"""ARPA files: the text format of backoff n-gram models that KenLM, SRILM and IRSTLM share.

::

    \\data\\
    ngram 1=6
    ngram 2=10

    \\1-grams:
    -1.0	<unk>	0
    -99	<s>	-0.30103
    -0.60206	a	-0.30103
    ...
    \\2-grams:
    -0.42597	<s> a
    ...
    \\end\\

Each line is ``log10 p(w | h)``, a tab, the words separated by spaces, and for every order but the
highest a tab and ``log10 backoff(h w)``. A model reads it as::

    log10 p(w | h) = stored(hw) if hw is listed, else backoff(h) + log10 p(w | h')

which is exactly :class:`~arlm.models.ngram.NGramModel`'s backoff form, so writing then reading
gives the same scores (the floats are written with 17 significant digits).

Conventions (KenLM's): [SOS] is ``<s>``, [EOS] is ``</s>``, [UNK] is ``<unk>``; [PAD] is not
written. ``<s>`` is never predicted: we write -99 for it (SRILM's "log 0"; lmplz writes 0) and
reading always gives it -inf. Any probability of -inf (MLE's unseen words) or backoff of -inf is
written as -99, and values ≤ -99 are read as -inf. Unigrams are written <unk>, <s>, </s>, then the
vocabulary in id order; higher orders in suffix order (by last word, then the one before, …), as
lmplz writes them.

Tokens with whitespace (a character-level model has " " and "\\n") cannot appear in ARPA, whose
fields are separated by spaces and tabs. They are escaped reversibly: each whitespace character c
becomes ``<0xHH>`` (``<U+HHHH>`` above 0xFF), e.g. " " -> ``<0x20>``, "\\n" -> ``<0x0A>`` (as
SentencePiece names bytes). Reading turns exactly these escapes back. A token that already
contains such an escape, or is spelled ``<s>``, ``</s>`` or ``<unk>`` without being the special
token, is rejected with an error rather than written ambiguously.

``.gz`` paths are written and read through gzip.
"""

from __future__ import annotations

import gzip
import io
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from arlm.errors import ConfigError, FormatError, MismatchError
from arlm.io import atomic_write
from arlm.models.ngram import NGramModel
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, SPECIAL_TOKENS, UNK_ID

ARPA_SPECIALS = {SOS_ID: "<s>", EOS_ID: "</s>", UNK_ID: "<unk>"}
LOG_ZERO = -99.0  # how ARPA files write log10(0)
_ESCAPE = re.compile(r"<0x([0-9A-F]{2})>|<U\+([0-9A-F]{4,6})>")


# ----- token escaping ----------------------------------------------------------------------------


def _escape_char(ch: str) -> str:
    return f"<0x{ord(ch):02X}>" if ord(ch) <= 0xFF else f"<U+{ord(ch):04X}>"


def escape_token(token: str) -> str:
    """A token as ARPA can hold it: every whitespace character becomes ``<0xHH>``/``<U+HHHH>``."""
    if _ESCAPE.search(token):
        raise ConfigError(f"the token {token!r} contains text that the ARPA writer uses to escape "
                          "whitespace (<0xHH> or <U+HHHH>); rename it in the vocabulary")
    if token in ARPA_SPECIALS.values():
        raise ConfigError(f"the ordinary token {token!r} would read back as ARPA's special token; "
                          "rename it in the vocabulary")
    if token == "":
        raise ConfigError("the vocabulary has an empty token, which ARPA cannot hold; remove it")
    return "".join(_escape_char(ch) if ch.isspace() else ch for ch in token)


def unescape_token(token: str) -> str:
    """Undo :func:`escape_token`: escapes that name a whitespace character become that character."""

    def sub(m: re.Match) -> str:
        ch = chr(int(m.group(1) or m.group(2), 16))
        return ch if ch.isspace() else m.group(0)

    return _ESCAPE.sub(sub, token) if "<" in token else token


# ----- writing -----------------------------------------------------------------------------------


def _fmt(values: np.ndarray) -> np.ndarray:
    """log10 values -> object array of the shortest strings that read back to the same float64;
    -inf -> -99. Each distinct value is formatted once (backoffs repeat a lot)."""
    v = np.where(np.isneginf(values), LOG_ZERO, values) + 0.0  # + 0.0 turns -0.0 into 0.0
    unique, inverse = np.unique(v, return_inverse=True)
    return np.array([repr(x) for x in unique.tolist()], dtype=object)[inverse]


def _kenlm_rank(ids: np.ndarray) -> np.ndarray:
    """Sort rank of token ids in lmplz's vocabulary order: <unk>, <s>, </s>, then the rest."""
    return np.where(ids == UNK_ID, 0, ids)


def write_arpa(model: NGramModel, path: str | Path) -> Path:
    """Write ``model`` as an ARPA file (gzip-compressed if ``path`` ends in .gz), atomically."""
    if not isinstance(model, NGramModel):
        family = getattr(model, "family", type(model).__name__)
        raise MismatchError(f"only n-gram models have an ARPA form; this is a {family!r} model: pass a "
                            "folder that `arlm train ngram` wrote")
    if model.floor is not None and model.order > 1:
        raise ConfigError(f"{model.smoothing} smoothing above order 1 has no exact ARPA form (unseen "
                          "words get a per-context constant, not a backoff); use mle, kn or mkn")
    path = Path(path)
    tokens = [""] * model.vocab_size
    for i, w in enumerate(model.vocab):
        if i in ARPA_SPECIALS:
            tokens[i] = ARPA_SPECIALS[i]
        elif i != PAD_ID:
            tokens[i] = escape_token(w)
    tok = np.array(tokens, dtype=object)
    with atomic_write(path, mode="wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else None
        out = io.TextIOWrapper(gz or raw, encoding="utf-8", newline="\n")
        smoothing_note = f"# arlm n-gram model: order={model.order} smoothing={model.smoothing}"
        out.write(f"{smoothing_note}\n\n\\data\\\n")
        for n, count in enumerate(model.num_ngrams, start=1):
            out.write(f"ngram {n}={count}\n")
        for n in range(1, model.order + 1):
            out.write(f"\n\\{n}-grams:\n")
            out.writelines(_order_lines(model, n, tok))
        out.write("\n\\end\\\n")
        out.flush()
        out.detach()
        if gz is not None:
            gz.close()
    return path


def _order_lines(model: NGramModel, n: int, tok: np.ndarray) -> Iterator[str]:
    """The lines of one order, in lmplz's order, in blocks (vectorised string building)."""
    words = model.ngram_words(n)  # (G, n)
    logp = model.logp[n - 1].copy()
    backoff = model.backoff[n - 1] if n < model.order else None
    if n == 1:
        keep = np.flatnonzero(np.arange(model.vocab_size) != PAD_ID)
        order = keep[np.argsort(_kenlm_rank(keep), kind="stable")]
        logp[SOS_ID] = LOG_ZERO  # never predicted
    else:
        ranks = _kenlm_rank(words)
        order = np.lexsort([ranks[:, i] for i in range(n)])  # last word is the primary key
    block = 1 << 16
    for s in range(0, len(order), block):
        rows = order[s : s + block]
        text = tok[words[rows, 0]]
        for i in range(1, n):
            text = text + " " + tok[words[rows, i]]
        line = _fmt(logp[rows]) + "\t" + text
        if backoff is not None:
            line = line + "\t" + _fmt(backoff[rows])
        yield "\n".join(line.tolist()) + "\n"


# ----- reading -----------------------------------------------------------------------------------


def _open_text(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")


def read_arpa(path: str | Path) -> NGramModel:
    """Read an ARPA file (ours, KenLM's, SRILM's; gzip is detected) into an :class:`NGramModel`.

    The vocabulary is [PAD] [SOS] [EOS] [UNK] followed by the other unigrams in file order. A
    missing ``<unk>`` gets probability 0. An n-gram whose context is not listed (pruned files)
    gets that context inserted with its backed-off probability and no backoff.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path} does not exist; give the path of an ARPA file")
    try:
        with _open_text(path) as f:
            lines = f.read().split("\n")
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise FormatError(f"{path} is not a readable UTF-8 ARPA text file ({e}); check the file") from e
    smoothing, sections = _split_sections(lines, path)
    return _build(sections, path, smoothing)


def _error(path: Path, lineno: int, msg: str) -> FormatError:
    return FormatError(f"{path}:{lineno}: {msg}; fix or regenerate the ARPA file")


def _split_sections(lines: list[str], path: Path) -> tuple[str, list[tuple[int, list[str]]]]:
    """Check the layout (header, counts, section headers, \\end\\) -> (smoothing named in our
    comment or "arpa", per order (line number of its first n-gram, its lines))."""
    i, total = 0, len(lines)
    smoothing = "arpa"
    while i < total and lines[i].strip() != "\\data\\":  # anything may precede \data\
        m = re.match(r"# arlm n-gram model: order=\d+ smoothing=(\S+)", lines[i])
        smoothing = m.group(1) if m else smoothing
        i += 1
    if i == total:
        raise FormatError(f"{path}: no \\data\\ line, so this is not an ARPA file; give an ARPA file")
    i += 1
    declared: list[int] = []
    while i < total and lines[i].strip():
        m = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", lines[i].strip())
        if not m:
            raise _error(path, i + 1, f"expected 'ngram N=count' in \\data\\, got {lines[i]!r}")
        if int(m.group(1)) != len(declared) + 1:
            raise _error(path, i + 1, "the ngram counts must be numbered 1, 2, 3, … in order")
        declared.append(int(m.group(2)))
        i += 1
    if not declared:
        raise _error(path, i + 1, "the \\data\\ section declares no n-gram counts")
    sections = []
    for n, count in enumerate(declared, start=1):
        while i < total and not lines[i].strip():
            i += 1
        if i == total or lines[i].strip() != f"\\{n}-grams:":
            got = lines[i].strip() if i < total else "the end of the file"
            raise _error(path, min(i + 1, total), f"expected the header \\{n}-grams:, got {got!r}")
        first = i = i + 1
        while i < total and lines[i].strip() and not lines[i].startswith("\\"):
            i += 1
        if i - first != count:
            raise _error(path, i + 1, f"the \\{n}-grams: section has {i - first} lines but "
                                      f"\\data\\ declares {count}")
        sections.append((first + 1, lines[first:i]))
    while i < total and not lines[i].strip():
        i += 1
    if i == total or lines[i].strip() != "\\end\\":
        raise _error(path, min(i + 1, total), "missing \\end\\ after the last n-gram section")
    return smoothing, sections


def _fields(line: str) -> list[str]:
    return [x for x in line.rstrip("\r").replace("\t", " ").split(" ") if x]


def _parse_section(path: Path, n: int, first: int, lines: list[str],
                   index: dict[str, int] | None):
    """Lines ``prob w_1 … w_n [backoff]`` -> (words (G, n) (ids, or str for unigrams), log10 p (G,),
    log10 backoff (G,)); vectorised, with a per-line look only to name a bad line."""
    text = " \n ".join(lines).replace("\t", " ").replace("\r", "")
    tokens = np.array([*filter(None, text.split(" ")), "\n"], dtype=object)
    ends = np.flatnonzero(tokens == "\n")  # (G,) one per line
    starts = np.concatenate([[0], ends[:-1] + 1])
    nfields = ends - starts
    bad = (nfields != n + 1) & (nfields != n + 2)
    if bad.any():
        j = int(np.argmax(bad))
        raise _error(path, first + j, f"a {n}-gram line needs a log10 probability, {n} words and "
                                      f"an optional backoff, got {len(_fields(lines[j]))} fields")
    words = tokens[starts[:, None] + 1 + np.arange(n)]  # (G, n) str
    has_backoff = nfields == n + 2
    logp = _numbers(path, first, tokens[starts], "log10 probability")
    backoff = np.zeros(len(lines))
    backoff[has_backoff] = _numbers(path, first + np.flatnonzero(has_backoff),
                                    tokens[starts[has_backoff] + n + 1], "backoff")
    if (logp > 0).any():
        raise _error(path, first + int(np.argmax(logp > 0)), "positive log10 probability")
    if index is None:
        return words[:, 0], logp, backoff
    ids = np.fromiter(map(index.get, words.ravel(), itertools.repeat(-1)), np.int64, words.size)
    ids = ids.reshape(words.shape)
    if (ids < 0).any():
        j, col = np.argwhere(ids < 0)[0]
        raise _error(path, first + int(j), f"the word {words[j, col]!r} is not among the unigrams")
    if (ids[:, 1:] == SOS_ID).any():
        raise _error(path, first + int(np.argmax((ids[:, 1:] == SOS_ID).any(axis=1))),
                     "<s> appears after the first word of an n-gram")
    return ids, logp, backoff


def _numbers(path: Path, lineno: int | np.ndarray, fields: np.ndarray, what: str) -> np.ndarray:
    """log10 values as text -> float64; ≤ -99 means log10(0) = -inf; nan/+inf are errors."""
    try:
        v = fields.astype(np.float64)
    except ValueError:
        v = None
    if v is None or np.isnan(v).any() or np.isposinf(v).any():
        for j, field in enumerate(fields.tolist()):  # find the culprit
            try:
                ok = math.isfinite(float(field)) or float(field) == -math.inf
            except ValueError:
                ok = False
            if not ok:
                at = lineno + j if np.isscalar(lineno) else int(lineno[j])
                raise _error(path, at, f"the {what} {field!r} is not a valid log10 value")
    return np.where(v <= LOG_ZERO, -np.inf, v)


def _build(sections, path: Path, smoothing: str) -> NGramModel:
    order = len(sections)
    special_ids = {"<s>": SOS_ID, "</s>": EOS_ID, "<unk>": UNK_ID, "<UNK>": UNK_ID}
    first, lines = sections[0]
    words, p1, b1 = _parse_section(path, 1, first, lines, None)
    vocab = list(SPECIAL_TOKENS)
    index: dict[str, int] = {}
    ids = np.empty(len(words), dtype=np.int64)
    for j, word in enumerate(words.tolist()):
        wid = special_ids.get(word)
        if word in index or (wid is not None and wid in ids[:j]):  # also <unk> and <UNK>
            raise _error(path, first + j, f"the unigram {word!r} is listed twice")
        if wid is None:
            wid = len(vocab)
            vocab.append(unescape_token(word))
        index[word] = wid
        ids[j] = wid
    V = len(vocab)
    logp1 = np.full(V, -np.inf)  # a missing <unk> or </s> gets probability 0
    logp1[ids] = p1
    logp1[SOS_ID] = -np.inf  # <s> is never predicted (lmplz writes 0, SRILM -99)
    bo1 = np.zeros(V)
    bo1[ids] = b1

    # per order: words, probabilities, backoffs, line numbers
    W, P, B = [np.arange(V, dtype=np.int64)[:, None]], [logp1], [bo1]
    L = [np.zeros(V, dtype=np.int64)]
    for n in range(2, order + 1):
        first, lines = sections[n - 1]
        w, p, b = _parse_section(path, n, first, lines, index)
        if n == order and (b != 0).any():
            raise _error(path, first + int(np.argmax(b != 0)),
                         "an n-gram of the highest order has a backoff")
        W.append(w)
        P.append(p)
        B.append(b)
        L.append(first + np.arange(len(lines), dtype=np.int64))

    sorted_keys = _sorted_keys(W, V)
    if sorted_keys is None:  # some context is not listed (a pruned file): add it, then sort again
        _insert_missing_contexts(W, P, B, L)
        sorted_keys = _sorted_keys(W, V)
    keys, logp = [np.arange(V, dtype=np.int64)], [logp1]
    for n in range(2, order + 1):
        k, perm = sorted_keys[n - 1]
        dup = np.flatnonzero(np.diff(k) == 0)
        if dup.size:
            raise _error(path, int(L[n - 1][perm[dup[0] + 1]]), f"this {n}-gram is listed twice")
        keys.append(k)
        logp.append(P[n - 1][perm])
        B[n - 1] = B[n - 1][perm]
    backoff = [B[n - 1] for n in range(1, order)]
    model = NGramModel(vocab, keys, logp, backoff, smoothing=smoothing)
    _fill_inserted(model)
    return model


def _sorted_keys(W: list[np.ndarray], V: int) -> list | None:
    """Per order the sorted keys of the n-grams given as words (rows of W[n-1]) and the sorting
    permutation; None if some n-gram's context (its first n-1 words) is not listed."""
    out: list = [(np.arange(V, dtype=np.int64), np.arange(V))]
    for n in range(2, len(W) + 1):
        words = W[n - 1]
        prefix = words[:, 0]  # id of w_1 (order 1 is dense)
        for m in range(2, n):  # id of w_1..w_m in order m
            table = out[m - 1][0]
            q = prefix * V + words[:, m - 1]
            pos = np.minimum(np.searchsorted(table, q), len(table) - 1)
            if len(table) == 0 or (table[pos] != q).any():
                return None
            prefix = pos
        k = prefix * V + words[:, -1]
        perm = np.argsort(k, kind="stable")
        out.append((k[perm], perm))
    return out


def _insert_missing_contexts(W, P, B, L) -> None:
    """Add every n-gram that is the context (prefix) of a listed n-gram but is not listed itself,
    from the highest order down, with probability NaN (computed later) and backoff 0."""
    for n in range(len(W), 2, -1):  # n-grams of order n need their (n-1)-gram prefixes
        need = np.unique(W[n - 1][:, :-1], axis=0)
        have = W[n - 2]
        both = np.concatenate([have, need])
        _, first = np.unique(both, axis=0, return_index=True)
        missing = first[first >= len(have)] - len(have)
        if missing.size:
            W[n - 2] = np.concatenate([have, need[missing]])
            P[n - 2] = np.concatenate([P[n - 2], np.full(missing.size, np.nan)])
            B[n - 2] = np.concatenate([B[n - 2], np.zeros(missing.size)])
            L[n - 2] = np.concatenate([L[n - 2], np.zeros(missing.size, dtype=np.int64)])


def _fill_inserted(model: NGramModel) -> None:
    """Inserted contexts get log10 p(w | h) by backing off through the orders below, bottom up."""
    for n in range(2, model.order):
        nan = np.flatnonzero(np.isnan(model.logp[n - 1]))
        if nan.size == 0:
            continue
        words = model.ngram_words(n)[nan]  # (r, n)
        lower = NGramModel(model.vocab, model.keys[: n - 1], model.logp[: n - 1],
                           model.backoff[: n - 2])
        hist = np.concatenate([np.full((len(words), 1), -1), words], axis=1)  # no context before
        # p(w | h) = backoff(h) + p(w | h'): score w after h with orders < n, plus h's own backoff
        lp = lower._score10(hist)[:, -1]
        h_ids = model._ngram_ids(hist)[n - 2][:, -2]  # id of the (n-1)-gram context h
        model.logp[n - 1][nan] = lp + model.backoff[n - 2][h_ids]
