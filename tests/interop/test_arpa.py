"""ARPA export/import: exact round trips, KenLM reads what we write, we read what lmplz writes.

References: ``LMPLZ_TOY_3GRAM`` and ``LMPLZ_TOY_2GRAM`` are the ARPA files written by KenLM's
``lmplz -o 3|2 --discount_fallback`` (kenlm 0.3.0) for the four sentences of ``TOY``; the
``kenlm`` module (if installed) scores the files we write; real ``lmplz`` (if on PATH or named by
``ARLM_LMPLZ``) builds the reference model for a real corpus.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from arlm.errors import ConfigError, FormatError
from arlm.interop.arpa import escape_token, read_arpa, unescape_token, write_arpa
from arlm.models.ngram import NGramModel
from arlm.streams import EOS_ID, SOS_ID, UNK_ID
from extras import require

SPECIALS = ["[PAD]", "[SOS]", "[EOS]", "[UNK]"]
TOY = ["a b c", "a b a", "b c a b", "c a"]

LMPLZ_TOY_3GRAM = """\\data\\
ngram 1=6
ngram 2=10
ngram 3=11

\\1-grams:
-1	<unk>	0
0	<s>	-0.30103
-0.60206	</s>	0
-0.60206	a	-0.30103
-0.69897	b	-0.30103
-0.69897	c	-0.30103

\\2-grams:
-0.42596874	a </s>	0
-0.60206	b </s>	0
-0.5351132	c </s>	0
-0.42596874	<s> a	-0.30103
-0.60206	b a	-0.30103
-0.33881855	c a	-0.30103
-0.6478175	<s> b	-0.30103
-0.45593196	a b	-0.30103
-0.6478175	<s> c	-0.30103
-0.45593196	b c	-0.30103

\\3-grams:
-0.1627273	b a </s>
-0.35902193	c a </s>
-0.5351132	a b </s>
-0.40248764	b c </s>
-0.5351132	a b a
-0.13717318	<s> c a
-0.31951338	b c a
-0.17069621	<s> a b
-0.37161106	c a b
-0.17069621	<s> b c
-0.4663974	a b c

\\end\\
"""

LMPLZ_TOY_2GRAM = """\\data\\
ngram 1=6
ngram 2=10

\\1-grams:
-1	<unk>	0
0	<s>	-0.20747365
-0.60206	</s>	0
-0.60206	a	-0.025807284
-0.69897	b	-0.20747365
-0.69897	c	-0.15569814

\\2-grams:
-0.5327335	a </s>
-0.51019025	b </s>
-0.42043626	c </s>
-0.6436615	<s> a
-0.51019025	b a
-0.56729794	c a
-0.55613554	<s> b
-0.7247773	a b
-0.55613554	<s> c
-0.7074032	b c

\\end\\
"""


def encode(sentences, vocab):
    index = {w: i for i, w in enumerate(vocab)}
    return np.array([i for s in sentences for i in
                     [SOS_ID, *(index.get(w, UNK_ID) for w in s.split()), EOS_ID]])


def fit(sentences, order, smoothing="mkn", vocab=None, **opts):
    if vocab is None:  # first-appearance order, as lmplz numbers words
        vocab = list(SPECIALS)
        for w in " ".join(sentences).split():
            if w not in vocab:
                vocab.append(w)
    return NGramModel.fit(encode(sentences, vocab), order, vocab, smoothing, **opts)


def pydoc_sentences(limit: int | None = None) -> list[str]:
    """Python's own documentation (``pydoc_data.topics``), one whitespace-tokenized line each."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        for line in topics[key].split("\n"):
            words = [w for w in line.split() if w not in ("<s>", "</s>", "<unk>")]
            if words:
                out.append(" ".join(words))
    return out[:limit]


def assert_same_model(ours: NGramModel, ref: NGramModel, atol: float) -> None:
    """Same vocabulary ids, same n-grams, log10 probabilities and backoffs within ``atol``."""
    assert ours.vocab == ref.vocab and ours.order == ref.order
    for n in range(1, ours.order + 1):
        assert np.array_equal(ours.keys[n - 1], ref.keys[n - 1]), f"different {n}-grams"
        a, b = ours.logp[n - 1], ref.logp[n - 1]
        assert np.array_equal(np.isneginf(a), np.isneginf(b))
        finite = np.isfinite(b)
        assert np.abs(a[finite] - b[finite]).max() <= atol, f"{n}-gram log10 probabilities"
        if n < ours.order:
            assert np.abs(ours.backoff[n - 1] - ref.backoff[n - 1]).max() <= atol, f"{n}-gram backoffs"


# --------------------------------------------------------------------------------------------
# lmplz's own output as the reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order,text", [(3, LMPLZ_TOY_3GRAM), (2, LMPLZ_TOY_2GRAM)])
def test_mkn_equals_lmplz_on_toy_corpus(tmp_path, order, text):
    path = tmp_path / "lmplz.arpa"
    path.write_text(text)
    ref = read_arpa(path)
    ours = fit(TOY, order, vocab=ref.vocab, discount_fallback=True)
    assert_same_model(ours, ref, atol=5e-7)  # lmplz prints float32 values


def test_read_lmplz_conventions(tmp_path):
    """lmplz writes 0 for <s>: it is still never predicted; ids follow the unigram lines."""
    path = tmp_path / "lmplz.arpa"
    path.write_text(LMPLZ_TOY_3GRAM)
    m = read_arpa(path)
    assert m.vocab == [*SPECIALS, "a", "b", "c"] and m.order == 3
    assert m.logp[0][SOS_ID] == -math.inf and m.logp[0][UNK_ID] == -1.0
    assert m.backoff[0][SOS_ID] == pytest.approx(-0.30103)
    sums = m.log_probs(torch.tensor([[SOS_ID, 4, 5, 6, EOS_ID]])).exp().sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)  # float32 values in the file


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing,opts,order", [
    (smoothing, opts, order)
    for smoothing, opts in [("mkn", {"discount_fallback": True}), ("kn", {"discount_fallback": True}),
                            ("mle", {})]
    for order in (1, 2, 4)
] + [("laplace", {}, 1)])  # add-k has no ARPA form above order 1 (tested below)
def test_write_read_gives_identical_scores(tmp_path, smoothing, opts, order):
    sents = pydoc_sentences(300)
    m = fit(sents, order, smoothing, **opts)
    back = read_arpa(write_arpa(m, tmp_path / "m.arpa"))
    assert back.vocab == m.vocab and back.num_ngrams == m.num_ngrams
    assert back.smoothing == smoothing
    tokens = torch.from_numpy(encode([*sents[:30], "zebra unknown words ."], m.vocab))[None]
    assert torch.equal(back.score(tokens), m.score(tokens))
    assert torch.equal(back.log_probs(tokens[:, :40]), m.log_probs(tokens[:, :40]))


def test_gzip_roundtrip(tmp_path):
    m = fit(TOY, 3, discount_fallback=True)
    path = write_arpa(m, tmp_path / "m.arpa.gz")
    with gzip.open(path, "rt") as f:
        assert f.readline().startswith("# arlm")
    back = read_arpa(path)
    assert back.score_sentence("a b c a") == m.score_sentence("a b c a")


def test_written_order_and_format(tmp_path):
    """Unigrams <unk>, <s>, </s>, then ids; higher orders by last word first (as lmplz); <s> is
    -99; every order but the highest has a backoff column."""
    m = fit(TOY, 3, discount_fallback=True)
    lines = (write_arpa(m, tmp_path / "m.arpa")).read_text().split("\n")
    uni = lines[lines.index("\\1-grams:") + 1 : lines.index("\\1-grams:") + 7]
    assert [ln.split("\t")[1] for ln in uni] == ["<unk>", "<s>", "</s>", "a", "b", "c"]
    assert uni[1].split("\t")[0] == "-99.0"
    bi = lines[lines.index("\\2-grams:") + 1 : lines.index("\\2-grams:") + 11]
    assert [ln.split("\t")[1] for ln in bi[:4]] == ["a </s>", "b </s>", "c </s>", "<s> a"]
    assert all(len(ln.split("\t")) == 3 for ln in bi)
    tri = lines[lines.index("\\3-grams:") + 1 : lines.index("\\3-grams:") + 12]
    assert all(len(ln.split("\t")) == 2 for ln in tri)


def test_whitespace_tokens_are_escaped_reversibly(tmp_path):
    text = ["h e l l o", "w o r l d"]  # a character model: the tokens include " " and "\n"
    vocab = [*SPECIALS, "h", "e", "l", "o", " ", "\n", "w", "r", "d", "\u3000"]
    data = [np.array([SOS_ID, *(vocab.index(c) for c in s), EOS_ID]) for s in
            ["hello world\n", "hello\u3000world", "old hello"]]
    m = NGramModel.fit(data, 3, vocab, "kn", discount_fallback=True)
    path = write_arpa(m, tmp_path / "chars.arpa")
    body = path.read_text()
    assert "<0x20>" in body and "<0x0A>" in body and "<U+3000>" in body
    back = read_arpa(path)
    assert back.vocab == vocab
    tokens = torch.from_numpy(np.concatenate(data))[None]
    assert torch.equal(back.score(tokens), m.score(tokens))
    assert escape_token("a b\tc") == "a<0x20>b<0x09>c" and unescape_token("a<0x20>b<0x09>c") == "a b\tc"
    assert unescape_token("<0x41>") == "<0x41>"  # only whitespace escapes are turned back
    del text


@pytest.mark.parametrize("token,match", [("<0x20>", "escape"), ("x<U+3000>", "escape"),
                                         ("<s>", "special"), ("</s>", "special"), ("", "empty")])
def test_ambiguous_tokens_are_rejected(tmp_path, token, match):
    vocab = [*SPECIALS, "a", token]
    m = NGramModel.fit(np.array([SOS_ID, 4, 5, EOS_ID]), 1, vocab, "mle")
    with pytest.raises(ConfigError, match=match):
        write_arpa(m, tmp_path / "m.arpa")
    assert not (tmp_path / "m.arpa").exists()  # nothing half-written


def test_add_k_has_no_arpa_form_above_order_1(tmp_path):
    with pytest.raises(ConfigError, match="no exact ARPA form"):
        write_arpa(fit(TOY, 2, "add-k", k=0.5), tmp_path / "m.arpa")
    m = fit(TOY, 1, "laplace")
    assert read_arpa(write_arpa(m, tmp_path / "m.arpa")).score_sentence("a b") == m.score_sentence("a b")


def test_pruned_file_gets_missing_contexts(tmp_path):
    """A trigram "a b c" whose context "a b" is not listed (as after SRILM pruning): reading inserts
    "a b" with p(b | a) = backoff(a) + log10 p(b) = -0.5 + -1 = -1.5 and no backoff, so
    log10 p(c | a b) = -0.3 as listed, and log10 p(a | a b) = backoff(a b) + backoff(b) + p(a)
    = 0 + -0.2 + -0.7 = -0.9."""
    path = tmp_path / "pruned.arpa"
    path.write_text("\\data\\\nngram 1=6\nngram 2=1\nngram 3=1\n\n\\1-grams:\n-1\t<unk>\n"
                    "-99\t<s>\t0\n-1\t</s>\n-0.7\ta\t-0.5\n-1\tb\t-0.2\n-0.5\tc\n\n\\2-grams:\n"
                    "-0.4\tb c\t0\n\n\\3-grams:\n-0.3\ta b c\n\n\\end\\\n")
    m = read_arpa(path)
    assert m.num_ngrams == [6, 2, 1]  # <unk> <s> </s> a b c, the inserted "a b", "a b c"
    a, b, c = (m.vocab.index(w) for w in "abc")
    assert m.logprob(b, [a]) / math.log(10) == pytest.approx(-1.5, abs=1e-12)
    assert m.logprob(c, [a, b]) / math.log(10) == pytest.approx(-0.3, abs=1e-12)
    assert m.logprob(a, [a, b]) / math.log(10) == pytest.approx(-0.9, abs=1e-12)


# --------------------------------------------------------------------------------------------
# malformed files
# --------------------------------------------------------------------------------------------

GOOD = LMPLZ_TOY_2GRAM


@pytest.mark.parametrize("broken,match", [
    ("hello\n", "no \\\\data\\\\"),
    (GOOD.replace("ngram 2=10", "ngram two=10"), ":3: expected 'ngram N=count'"),
    (GOOD.replace("ngram 2=10", "ngram 3=10"), ":3: .*numbered"),
    (GOOD.replace("\\2-grams:", "\\3-grams:"), ":13: expected the header"),
    (GOOD.replace("-0.5327335\ta </s>", "-0.5327335\ta"), ":14: .*got 2 fields"),
    (GOOD.replace("-0.6436615\t<s> a", "x\t<s> a"), ":17: .*'x' is not a valid log10 value"),
    (GOOD.replace("-0.7074032\tb c\n", ""), "has 9 lines but .* declares 10"),
    (GOOD.replace("-0.7074032\tb c", "-0.7074032\tb zebra"), ":23: the word 'zebra'"),
    (GOOD.replace("\\end\\", ""), "missing \\\\end\\\\"),
    (GOOD.replace("-0.7074032\tb c", "-0.7074032\tb a"), ":23: .*listed twice"),
    (GOOD.replace("-0.7074032\tb c", "0.5\tb c"), ":23: positive"),
    (GOOD.replace("-0.7074032\tb c", "-0.7074032\tb c\t-0.1"), ":23: .*highest order has a backoff"),
    (GOOD.replace("-0.7074032\tb c", "-0.7074032\tb <s>"), ":23: <s> appears after"),
    (GOOD.replace("-0.69897\tc\t-0.15569814", "-0.69897\tc\tnan"), ":11: .*backoff 'nan'"),
])
def test_malformed_files_name_the_line(tmp_path, broken, match):
    path = tmp_path / "broken.arpa"
    path.write_text(broken)
    with pytest.raises(FormatError, match=match):
        read_arpa(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        read_arpa(tmp_path / "missing.arpa")
    (tmp_path / "bin.arpa").write_bytes(b"\\data\\\n\xff\xfe\x00")
    with pytest.raises(FormatError, match="UTF-8"):
        read_arpa(tmp_path / "bin.arpa")
    (tmp_path / "bad.arpa.gz").write_bytes(gzip.compress(GOOD.encode())[:40])
    with pytest.raises(FormatError):
        read_arpa(tmp_path / "bad.arpa.gz")


# --------------------------------------------------------------------------------------------
# KenLM reads what we write
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", ["mkn", "kn"])
@pytest.mark.parametrize("order", [2, 3, 5])
def test_kenlm_scores_our_arpa_like_we_do(tmp_path, smoothing, order):
    kenlm = require("kenlm", reason="the kenlm module is not installed (pip install -e .[kenlm])")
    sents = pydoc_sentences(3000)
    m = fit(sents[:2500], order, smoothing)
    path = write_arpa(m, tmp_path / "m.arpa")
    k = kenlm.Model(str(path))
    held_out = [*sents[2500:2600], "zebras are not in the vocabulary", "", "the the the the"]
    for s in held_out:
        assert m.score_sentence(s) == pytest.approx(k.score(s, bos=True, eos=True), abs=1e-4), s
        assert m.score_sentence(s, bos=False, eos=False) == pytest.approx(
            k.score(s, bos=False, eos=False), abs=1e-4), s


def test_kenlm_scores_our_mle_arpa(tmp_path):
    kenlm = require("kenlm", reason="the kenlm module is not installed (pip install -e .[kenlm])")
    sents = pydoc_sentences(500)
    m = fit(sents, 3, "mle")
    k = kenlm.Model(str(write_arpa(m, tmp_path / "m.arpa")))
    for s in sents[:50]:  # training sentences: every n-gram seen, all finite
        assert m.score_sentence(s) == pytest.approx(k.score(s), abs=1e-4)
    assert m.score_sentence("zebra") == -math.inf and k.score("zebra") <= -99  # log10 0 = -99


# --------------------------------------------------------------------------------------------
# real lmplz (optional): every n-gram's probability and backoff
# --------------------------------------------------------------------------------------------


def _lmplz() -> str | None:
    return os.environ.get("ARLM_LMPLZ") or shutil.which("lmplz")


@pytest.mark.skipif(_lmplz() is None, reason="lmplz is not on PATH and ARLM_LMPLZ is not set")
@pytest.mark.parametrize("order", [3, 5])
def test_mkn_equals_real_lmplz(tmp_path: Path, order):
    sents = pydoc_sentences()  # ~8700 lines, ~65k tokens of Python's documentation
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(sents) + "\n")
    arpa = tmp_path / "lmplz.arpa"
    with open(text) as src, open(arpa, "w") as dst:
        subprocess.run([_lmplz(), "-o", str(order), "-S", "1G", "-T", str(tmp_path)], stdin=src,
                       stdout=dst, stderr=subprocess.DEVNULL, check=True)
    ref = read_arpa(arpa)
    ours = fit(sents, order, vocab=ref.vocab)  # discounts estimated, no fallback
    assert_same_model(ours, ref, atol=1e-5)
