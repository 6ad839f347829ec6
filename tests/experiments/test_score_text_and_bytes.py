"""`arlm score-text` (the metrics of arlm.evaluate.metrics on files) and bits per byte next to bits per
character in `arlm eval`: the unit on which models with different tokenizers compare."""

from __future__ import annotations

import json
import math

import pytest

from arlm.data.cache import FORMAT_VERSION, encode_corpus
from arlm.data.corpora import load_corpus
from arlm.data.tokenizers import train_tokenizer
from arlm.errors import ConfigError, DataError
from arlm.evaluate.likelihood import LikelihoodReport
from arlm.evaluate.metrics import score_text_files, text_metrics
from cli_helpers import arlm, ok, one_line_error

HYPS = ["the cat sat on the mat", "hello world"]
REFS = ["the cat sat on a mat", "hello there world"]


def test_score_text_equals_the_library_and_hand_computed_rouge(tmp_path):
    (tmp_path / "hyp.txt").write_text("\n".join(HYPS) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(REFS) + "\n")
    scores = json.loads(ok(arlm("score-text", "--hyp", "hyp.txt", "--ref", "ref.txt", "--json",
                                cwd=tmp_path)))
    assert scores == pytest.approx(text_metrics(HYPS, REFS))
    # ROUGE-2 F by hand: pair 1 shares 3 of 5 bigrams each way (F = 0.6), pair 2 none: mean 30
    assert scores["rouge2"] == pytest.approx(30.0)
    # distinct-1 by hand: 8 tokens, 7 distinct ("the" twice)
    assert scores["distinct_1"] == pytest.approx(7 / 8)
    chars = json.loads(ok(arlm("score-text", "--hyp", "hyp.txt", "--json", "--tokenize", "char",
                               cwd=tmp_path)))
    assert "bleu" not in chars
    assert chars["distinct_1"] == pytest.approx(text_metrics(HYPS, tokenize=list)["distinct_1"])
    table = ok(arlm("score-text", "--hyp", "hyp.txt", "--ref", "ref.txt", cwd=tmp_path))
    assert "ROUGE-2" in table and "self-BLEU" in table


def test_score_text_bad_input_is_one_line(tmp_path):
    (tmp_path / "hyp.txt").write_text("a\nb\n")
    (tmp_path / "ref.txt").write_text("a\n")
    (tmp_path / "empty.txt").write_text("")
    one_line_error(arlm("score-text", "--hyp", "hyp.txt", "--ref", "ref.txt", cwd=tmp_path), "2 lines", "1")
    one_line_error(arlm("score-text", "--hyp", "nope.txt", cwd=tmp_path), "does not exist")
    with pytest.raises(DataError, match="is empty"):
        score_text_files(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="whitespace, char"):
        score_text_files(tmp_path / "hyp.txt", tokenize="bpe")


def test_encoded_split_counts_utf8_bytes_like_chars(tmp_path):
    assert FORMAT_VERSION >= 2
    lines = ["héllo wörld", "∑ x = 1", "plain"]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(str(tmp_path / "text.txt"))
    tok = train_tokenizer("char", corpus.lines("all"))
    for use_cache in (False, True, True):  # in memory, written to the cache, read back from it
        split = encode_corpus(corpus, "all", tok, cache_dir=tmp_path / "cache", use_cache=use_cache)
        assert split.num_chars == sum(len(x) + 1 for x in lines)
        assert split.num_bytes == sum(len(x.encode("utf-8")) + 1 for x in lines) == split.num_chars + 2 + 2
    report = LikelihoodReport(nll=100.0, num_tokens=10, num_sequences=3, num_oov=0, oov_nll=0.0,
                              mean_sentence_ppl=1.0, num_chars=20, num_bytes=25)
    assert report.bits_per_byte == pytest.approx(100 / math.log(2) / 25)
    assert report.bits_per_byte * 25 == pytest.approx(report.bits_per_char * 20)
    assert report.to_dict()["bits_per_byte"] == report.bits_per_byte


def test_eval_reports_bits_per_byte_for_word_and_char_models(tmp_path):
    (tmp_path / "text.txt").write_text("naïve café\nthe café is naïve\n" * 30, encoding="utf-8")
    for tokenizer in ("word", "char"):
        ok(arlm("train", "ngram", "--corpus", "text.txt", "--split", "all", "--order", "2", "--tokenizer",
                tokenizer, "--smoothing", "add-k", "--out", tokenizer, cwd=tmp_path))
        result = json.loads(ok(arlm("eval", tokenizer, "--corpus", "text.txt", "--split", "all", "--json",
                                    cwd=tmp_path)))
        chars = 30 * (len("naïve café") + 1 + len("the café is naïve") + 1)
        nbytes = chars + 30 * 4  # ï and é are two bytes each in UTF-8: 4 per pair of lines
        assert result["num_chars"] == chars and result["num_bytes"] == nbytes
        assert result["bits_per_byte"] == pytest.approx(result["nll"] / math.log(2) / nbytes)
    assert "bits per byte" in ok(arlm("eval", "char", "--corpus", "text.txt", "--split", "all", cwd=tmp_path))
