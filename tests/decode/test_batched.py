"""Continuous batching: every family's rows, joining at different steps and with their own settings,
get the tokens they get decoded alone (greedy: the same argmax; sampled: the same draws of their own
seed); a row that leaves takes no more steps; a row with no token left to choose fails alone."""

import string

import numpy as np
import pytest
import torch

from arlm.decode.batched import ContinuousBatch, KVRows, batchable, draw
from arlm.decode.config import DecodingConfig
from arlm.decode.fast import FastDecoder
from arlm.decode.search import generate
from arlm.errors import ConfigError
from arlm.models.ngram import NGramModel
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.sigma_gpt import SigmaGPT
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.models.window import WindowConfig, WindowLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID

V = 12


def decode_text(ids: list[int]) -> str:
    return "".join(string.ascii_lowercase[i % 26] for i in ids)


def _ngram():
    rng = np.random.default_rng(0)
    vocab = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *string.ascii_lowercase[:8]]
    data = [np.array([SOS_ID, *rng.integers(4, 12, size=rng.integers(2, 9)), EOS_ID]) for _ in range(60)]
    return NGramModel.fit(data, 3, vocab, "mkn", discount_fallback=True)


def _neural(cls, cfg):
    torch.manual_seed(0)
    model = cls(cfg).eval()
    with torch.no_grad():  # sharper than the initial weights' near-uniform distributions
        for p in model.parameters():
            p.mul_(8.0)
    return model


FAMILIES = {
    "ngram": _ngram,
    "window": lambda: _neural(WindowLM, WindowConfig(vocab_size=V, context=3, d_embed=8, d_hidden=16)),
    "lstm": lambda: _neural(RNNLM, RNNConfig(vocab_size=V, cell="lstm", d_embed=8, d_hidden=16)),
    "gru": lambda: _neural(RNNLM, RNNConfig(vocab_size=V, cell="gru", d_embed=8, d_hidden=16)),
    "transformer": lambda: _neural(TransformerLM, TransformerConfig(vocab_size=V, block_size=48,
                                                                    n_layer=2, n_head=2, d_model=16)),
}

# (the step it joins at, prompt, settings): different prompt lengths, joins mid-stream, greedy and
# sampled rows, history-reading processors, stop strings, [EOS] allowed or banned
PLAN = [
    (0, [SOS_ID, 5, 6], dict(temperature=0.0, max_new_tokens=12, banned=(EOS_ID,))),
    (0, [SOS_ID, 7], dict(seed=3, max_new_tokens=10)),
    (0, [SOS_ID, 5, 6], dict(seed=4, max_new_tokens=9, banned=(EOS_ID,))),
    (2, [SOS_ID], dict(temperature=0.0, max_new_tokens=8, repetition_penalty=1.5)),
    (3, [SOS_ID, 9, 10, 11, 4], dict(seed=7, temperature=0.8, top_k=5, top_p=0.9, max_new_tokens=11,
                                     banned=(EOS_ID,))),
    (3, [SOS_ID, 8], dict(seed=8, no_repeat_ngram_size=2, max_new_tokens=10)),
    (5, [SOS_ID, 6, 6], dict(seed=9, min_p=0.1, stop_strings=("e",), max_new_tokens=12)),
    (9, [SOS_ID, 4], dict(temperature=0.0, max_new_tokens=6)),
]


def run_plan(model, plan, leave_at: dict[int, int] | None = None):
    """Decode ``plan`` through one ContinuousBatch -> (rows, the batch size at each step)."""
    batch = ContinuousBatch(model, eos_id=EOS_ID, pad_id=PAD_ID, decode=decode_text)
    rows, sizes, step = {}, [], 0
    while len(rows) < len(plan) or len(batch):
        batch.join([batch.row(prompt, DecodingConfig(**kw), tag=i)
                    for i, (at, prompt, kw) in enumerate(plan) if at == step])
        rows |= {r.tag: r for r in batch.rows if r.tag not in rows}
        gone = [r for r in batch.rows if (leave_at or {}).get(r.tag) == step]
        batch.leave(gone)
        sizes.append(len(batch))
        batch.step()
        step += 1
    return [rows[i] for i in range(len(plan))], sizes


def alone(model, prompt, kw):
    s = generate(model, [prompt], DecodingConfig(**kw), eos_id=EOS_ID, decode=decode_text)
    return s.rows()[0], s.log_probs[0, :int(s.lengths[0])].tolist(), s.stop_reason[0]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rows_decoded_together_get_the_tokens_they_get_alone(family):
    model = FAMILIES[family]()
    assert batchable(model) is None
    rows, sizes = run_plan(model, PLAN)
    assert max(sizes) >= 5  # they really were decoded together
    for row, (_, prompt, kw) in zip(rows, PLAN, strict=True):
        tokens, logps, reason = alone(model, prompt, kw)
        assert row.tokens == tokens, (row.tag, kw)
        assert row.stop_reason == reason
        assert np.allclose(row.log_probs, logps, atol=1e-5)


def test_the_transformer_batch_is_one_forward_per_step_over_a_ragged_pool():
    model = FAMILIES["transformer"]()
    batch = ContinuousBatch(model, eos_id=None, pad_id=PAD_ID)
    assert isinstance(batch.model, FastDecoder) and isinstance(batch.states, KVRows)
    calls = []
    step = batch.states.step
    batch.states.step = lambda tokens: calls.append(tokens.shape) or step(tokens)
    batch.add([SOS_ID, 5, 6, 7], DecodingConfig(temperature=0.0, max_new_tokens=5))
    batch.step()
    batch.add([SOS_ID], DecodingConfig(temperature=0.0, max_new_tokens=5))
    batch.step()
    assert batch.states.lengths == [6, 2] and calls == [(1, 1), (2, 1)]


def test_a_row_that_leaves_takes_no_more_steps_and_the_others_are_unchanged():
    model = FAMILIES["transformer"]()
    rows, _ = run_plan(model, PLAN, leave_at={0: 4, 3: 5})
    assert len(rows[0].tokens) == 4 and rows[0].stop_reason is None  # stepped at steps 0..3 only
    assert len(rows[3].tokens) == 3  # joined at step 2
    for i, (row, (_, prompt, kw)) in enumerate(zip(rows, PLAN, strict=True)):
        tokens = alone(model, prompt, kw)[0]
        assert row.tokens == (tokens[:len(row.tokens)] if i in (0, 3) else tokens)


def test_a_row_with_every_token_excluded_fails_alone():
    model = FAMILIES["lstm"]()
    batch = ContinuousBatch(model, eos_id=EOS_ID, pad_id=PAD_ID)
    good = batch.add([SOS_ID, 5], DecodingConfig(temperature=0.0, max_new_tokens=4))
    bad = batch.add([SOS_ID, 5], DecodingConfig(temperature=0.0, max_new_tokens=4,
                                                banned=tuple(range(V))))
    first = batch.step()
    assert [s.error is None for s in first] == [True, False] and bad.stop_reason == "error"
    assert "every token is excluded" in str(first[1].error) and batch.rows == [good]
    while len(batch):
        batch.step()
    assert good.tokens == alone(model, [SOS_ID, 5], dict(temperature=0.0, max_new_tokens=4))[0]


def test_what_is_not_batched_is_refused_with_a_reason():
    sigma = SigmaGPT(TransformerConfig(vocab_size=V, block_size=16, n_layer=1, n_head=1, d_model=8)).eval()
    assert "one request at a time" in batchable(sigma)
    with pytest.raises(ConfigError, match="one request at a time"):
        ContinuousBatch(sigma, eos_id=EOS_ID, pad_id=PAD_ID)
    batch = ContinuousBatch(FAMILIES["ngram"](), eos_id=EOS_ID, pad_id=PAD_ID)
    with pytest.raises(ConfigError, match="beam"):
        batch.row([SOS_ID], DecodingConfig(strategy="beam", num_beams=2))
    with pytest.raises(ConfigError, match="one sample"):
        batch.row([SOS_ID], DecodingConfig(num_samples=2))
    tf = ContinuousBatch(FAMILIES["transformer"](), eos_id=EOS_ID, pad_id=PAD_ID)
    with pytest.raises(ConfigError, match="context"):
        tf.row([SOS_ID] * 40, DecodingConfig(max_new_tokens=10))


def test_the_pool_reorders_rows_in_any_order():
    model = FAMILIES["transformer"]()
    batch = ContinuousBatch(model, eos_id=None, pad_id=PAD_ID)
    a = batch.add([SOS_ID, 5, 6], DecodingConfig(temperature=0.0, max_new_tokens=6))
    batch.step()
    b = batch.add([SOS_ID, 7], DecodingConfig(temperature=0.0, max_new_tokens=6))
    with torch.inference_mode():
        batch._keep([1, 0])  # a general reorder, not a tail fill
    assert batch.rows == [b, a] and batch.states.lengths == [2, 4]
    while len(batch):
        batch.step()
    assert a.tokens == alone(model, [SOS_ID, 5, 6], dict(temperature=0.0, max_new_tokens=6))[0]
    assert b.tokens == alone(model, [SOS_ID, 7], dict(temperature=0.0, max_new_tokens=6))[0]


@pytest.mark.parametrize("seed", range(5))
def test_draw_is_the_draw_of_multinomial_row_by_row(seed):
    torch.manual_seed(seed)
    logits = torch.randn(16, 50, dtype=torch.double) * 3
    logits[:8, ::3] = float("-inf")  # truncated rows: zero probabilities
    probs = torch.softmax(logits, -1)
    generators = lambda: [torch.Generator().manual_seed(100 * seed + j) for j in range(16)]  # noqa: E731
    alone = [int(torch.multinomial(probs[j:j + 1], 1, generator=g)) for j, g in enumerate(generators())]
    together = draw(probs, generators())
    assert together.tolist() == alone
