"""The ∞-gram: counts and estimates against brute force and against the paper's own engine
(``infini-gram``), the ARModel interface, sampling that copies training text, and the folder format."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.extras import require

from arlm.errors import DataError, FormatError, MismatchError
from arlm.evaluate.likelihood import pad_batch
from arlm.models.conformance import check_conformance
from arlm.models.infinigram import InfiniGramModel
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, split_sequences

V = 9
VOCAB = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *(f"w{i}" for i in range(4, V))]


def sequences(seed: int, count: int, longest: int, low: int = 3) -> list[np.ndarray]:
    """``count`` random [SOS] … [EOS] sequences over ids low..V-1 of 0..longest-1 content tokens."""
    rng = np.random.default_rng(seed)
    return [np.array([SOS_ID, *rng.integers(low, V, size=rng.integers(0, longest)), EOS_ID])
            for _ in range(count)]


@pytest.fixture(scope="module")
def corpus() -> np.ndarray:
    return np.concatenate(sequences(0, 60, 10))


@pytest.fixture(scope="module")
def model(corpus) -> InfiniGramModel:
    return InfiniGramModel.fit(corpus, VOCAB)


def brute_count(stream: list[int], pattern: list[int]) -> int:
    return sum(stream[i:i + len(pattern)] == pattern for i in range(len(stream) - len(pattern) + 1))


def brute_estimate(stream: list[int], context: list[int], word: int) -> tuple[float, int]:
    """The paper's estimate by counting: the longest suffix s of the context with cnt(s) > 0 (a context
    ending in [EOS], followed only by [SOS], backs off to the empty one), cnt(s w) / cnt(s)."""
    if context and context[-1] == EOS_ID:
        context = []
    for k in range(len(context), 0, -1):
        s = context[len(context) - k:]
        if (c := brute_count(stream, s)) > 0:
            return brute_count(stream, [*s, word]) / c, k
    unigram = np.bincount(stream, minlength=V).astype(float)
    unigram[[PAD_ID, SOS_ID]] = 0
    return unigram[word] / unigram.sum(), 0


def test_counts_equal_brute_force(model, corpus):
    stream = corpus.tolist()
    rng = np.random.default_rng(1)
    for _ in range(300):
        pattern = rng.integers(1, V, size=rng.integers(1, 6)).tolist()
        assert model.count(pattern) == brute_count(stream, pattern), pattern
    assert model.count([]) == len(stream)


def test_estimates_equal_the_papers_rule_by_brute_force(model, corpus):
    stream = corpus.tolist()
    test = sequences(2, 25, 14)
    scores = model.score(torch.from_numpy(pad_batch(test))).numpy()  # (B, T-1)
    zeros = 0
    for b, row in enumerate(test):
        for t in range(len(row) - 1):
            p, k = brute_estimate(stream, row[:t + 1].tolist(), int(row[t + 1]))
            assert np.exp(scores[b, t]) == pytest.approx(p, abs=1e-12)
            assert model.prob(row[:t + 1].tolist(), int(row[t + 1])) == pytest.approx((p, k))
            zeros += p == 0
    assert zeros > 0  # the sparse estimates the paper warns about: continuations never seen get 0


def test_interface_conformance(model):
    check_conformance(model, torch.from_numpy(pad_batch(sequences(3, 6, 12))))


def test_special_tokens_are_never_predicted_and_distributions_sum_to_one(model):
    lp = model.log_probs(torch.from_numpy(pad_batch(sequences(4, 4, 8))))  # (B, T, V)
    assert torch.isneginf(lp[..., PAD_ID]).all() and torch.isneginf(lp[..., SOS_ID]).all()
    assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.shape[:2], dtype=torch.float64))


def test_samples_from_sos_are_training_sequences_verbatim(model, corpus):
    """Every context [SOS] x_1..x_t of a sample occurs in training, so the next token continues one of
    its occurrences: a sample is a training sequence, copied (counts are as sparse as they get)."""
    training = {tuple(s) for s in split_sequences(corpus)}
    torch.manual_seed(0)
    for _ in range(40):
        state, seq = model.start(1), [SOS_ID]
        out, state = model.step(torch.tensor([[SOS_ID]]), state)
        while seq[-1] != EOS_ID:
            token = int(torch.multinomial(out.exp()[0], 1))
            seq.append(token)
            out, state = model.step(torch.tensor([[token]]), state)
        assert tuple(seq) in training


def test_after_an_unseen_prompt_the_sample_copies_training_text(model, corpus):
    """After a prompt it never saw, the ∞-gram backs off to the prompt's longest occurring suffix s;
    from there each token extends the match, so s + continuation + [EOS] occurs in training."""
    text = corpus.tolist()
    rng = np.random.default_rng(5)
    torch.manual_seed(1)
    for _ in range(20):
        prompt = [SOS_ID, *rng.integers(3, V, size=12).tolist()]  # 12 random tokens: unseen
        assert brute_count(text, prompt) == 0
        out, state = model.step(torch.tensor([prompt]), model.start(1))
        _, matched = model.prob(prompt, int(torch.argmax(out)))
        continuation = []
        while not continuation or continuation[-1] != EOS_ID:
            token = int(torch.multinomial(out.exp()[0], 1))
            continuation.append(token)
            out, state = model.step(torch.tensor([[token]]), state)
        copied = prompt[len(prompt) - matched:] + continuation
        assert brute_count(text, copied) > 0
        assert len(continuation) + matched >= 2


def test_save_and_load_memory_mapped(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = InfiniGramModel.load(tmp_path / "m")
    assert isinstance(loaded.tokens, np.memmap) and isinstance(loaded.ends, np.memmap)
    tokens = torch.from_numpy(pad_batch(sequences(6, 5, 10)))
    assert torch.equal(loaded.score(tokens), model.score(tokens))


def test_damaged_folders_and_bad_data_are_one_sentence_errors(model, tmp_path):
    model.save(tmp_path / "m")
    (tmp_path / "m" / "suffix_array.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(FormatError, match="build the ∞-gram again"):
        InfiniGramModel.load(tmp_path / "m")
    (tmp_path / "m" / "suffix_array.npy").unlink()
    with pytest.raises(FormatError, match="missing"):
        InfiniGramModel.load(tmp_path / "m")
    with pytest.raises(DataError, match=r"\[SOS\]"):
        InfiniGramModel.fit(np.array([4, 5, EOS_ID]), VOCAB)
    with pytest.raises(MismatchError, match="outside"):
        InfiniGramModel.fit(np.array([SOS_ID, 40, EOS_ID]), VOCAB)
    with pytest.raises(MismatchError, match="vocabulary"):
        model.score(torch.tensor([[SOS_ID, 99]]))


def test_large_vocabularies_sort_as_integers():
    """Ids above 255 (a word vocabulary) are sorted as integers, not as their bytes."""
    vocab = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *(f"w{i}" for i in range(4, 70_000))]
    rng = np.random.default_rng(7)
    seqs = [np.array([SOS_ID, *rng.choice([4, 255, 256, 511, 65_535, 65_536, 69_999], size=8), EOS_ID])
            for _ in range(50)]
    stream = np.concatenate(seqs)
    m = InfiniGramModel.fit(stream, vocab)
    assert m.tokens.dtype == np.uint32
    text = stream.tolist()
    for pattern in ([256], [255, 256], [65_535, 65_536], [69_999, EOS_ID], [4, 511, 256]):
        assert m.count(pattern) == brute_count(text, pattern)


def build_engine_index(stream: np.ndarray, folder) -> None:
    """An index of ``stream`` (one document) built by the infini-gram package's own indexer: its
    tokenized-file format (a 0xFFFF document separator, then u16 ids), its Rust suffix-array builder."""
    folder.mkdir()
    (folder / "tokenized.0").write_bytes(b"\xff\xff" + stream.astype("<u2").tobytes())
    (folder / "offset.0").write_bytes(np.array([0], dtype="<u8").tobytes())
    data = folder.parent / "raw"  # the indexer reads no raw text: the tokenized files exist already
    data.mkdir()
    subprocess.run([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(data), "--save_dir",
                    str(folder), "--token_dtype", "u16", "--mem", "1", "--cpus", "1", "--ulimit", "1024"],
                   check=True, capture_output=True, timeout=120)


@pytest.mark.slow
def test_counts_and_estimates_equal_the_infini_gram_engine(model, corpus, tmp_path):
    engine_module = require("infini_gram.engine", "the infini-gram package cross-checks the ∞-gram")
    build_engine_index(corpus, tmp_path / "index")
    engine = engine_module.InfiniGramEngine(index_dir=str(tmp_path / "index"), eos_token_id=EOS_ID,
                                            vocab_size=65535, token_dtype="u16")
    rng = np.random.default_rng(8)
    for _ in range(200):  # the count of any n-gram
        pattern = rng.integers(1, V, size=rng.integers(1, 7)).tolist()
        assert model.count(pattern) == engine.count(pattern)["count"], pattern
    checked = 0
    for row in sequences(9, 30, 14):  # the ∞-gram estimate at every position of held-out sequences
        for t in range(1, len(row) - 1):  # contexts [SOS] x_1..x_t (none ends in [EOS])
            context, word = row[:t + 1].tolist(), int(row[t + 1])
            theirs = engine.infgram_prob(context, word)
            ours, suffix_len = model.prob(context, word)
            assert suffix_len == theirs["suffix_len"]
            assert ours == pytest.approx(theirs["prob"], abs=1e-12)
            dist = engine.infgram_ntd(context)["result_by_token_id"]
            out, _ = model.step(torch.tensor([context]), model.start(1))
            ours_dist = {w: p for w, p in enumerate(out[0].exp().tolist()) if p > 0}
            assert ours_dist == pytest.approx({w: r["prob"] for w, r in dist.items()}, abs=1e-12)
            checked += 1
    assert checked > 100


def test_the_likelihood_report_counts_the_zeros(model):
    from arlm.evaluate.likelihood import evaluate_likelihood

    test = sequences(10, 20, 12)
    scores = model.score(torch.from_numpy(pad_batch(test))).numpy()
    scored = pad_batch(test)[:, 1:] != PAD_ID
    report = evaluate_likelihood(model, test, show_progress=False)
    assert report.num_zero == int(np.isneginf(scores[scored]).sum()) > 0
    assert report.perplexity == float("inf")


def test_a_context_ending_in_eos_backs_off_to_the_unigram(model, corpus):
    """[EOS] is only ever followed by [SOS], which is never predicted: no suffix ending in [EOS] has a
    predictable continuation, so the estimate is the unigram's."""
    stream = corpus.tolist()
    for word in range(2, V):
        p, k = model.prob([SOS_ID, 4, 5, EOS_ID], word)
        assert k == 0 and p == pytest.approx(brute_estimate(stream, [], word)[0], abs=1e-12)
