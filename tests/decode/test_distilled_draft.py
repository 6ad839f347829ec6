"""The distilled draft: its table holds the target's own choices, pruning changes no proposal, speculative
greedy with it gives plain greedy's tokens, the file round-trips, bad input is a one-line error."""

from collections import Counter

import numpy as np
import pytest
import torch

from arlm.decode.distilled_draft import (
    ROLLOUT_PROMPT,
    DistilledDraft,
    distill_tables,
    longest_context,
    rollout_streams,
    target_choices,
)
from arlm.decode.search import greedy_search
from arlm.decode.speculative import RoundCost, speculative_generate
from arlm.errors import ConfigError, FormatError, MismatchError
from arlm.models.ngram import NGramModel
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import EOS_ID, SOS_ID

pytestmark = pytest.mark.usefixtures("one_thread")

V = 12


def _transformer(seed=0, block_size=32):
    """A random tiny Transformer with large weights: peaked distributions, varied greedy text."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, d_model=16,
                            tie_weights=False)
    model = TransformerLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.4)
    return model


def _text(n=3000, seed=0, vocab_size=V):
    """A token stream with structure (a few repeated phrases and noise), over ids 3 … V − 1."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(3, vocab_size, size=int(rng.integers(3, 8))) for _ in range(6)]
    out: list[int] = []
    while len(out) < n:
        out += phrases[int(rng.integers(len(phrases)))].tolist() if rng.random() < 0.8 else \
            rng.integers(3, vocab_size, size=2).tolist()
    return np.array(out[:n], dtype=np.int64)


def _reference_tables(tokens, choices, order, counted=None):
    """Unpruned tables by plain counting: context tuple -> its most frequent choice (ties: lowest id),
    over the positions ``counted`` (default: all)."""
    counts: list[dict[tuple, Counter]] = [{} for _ in range(order - 1)]
    for i in range(len(tokens)):
        if counted is not None and not counted[i]:
            continue
        for n in range(1, order):
            if i - n + 1 < 0:
                break
            context = tuple(tokens[i - n + 1 : i + 1].tolist())
            counts[n - 1].setdefault(context, Counter())[int(choices[i])] += 1
    return [{c: min(cnt, key=lambda y: (-cnt[y], y)) for c, cnt in table.items()} for table in counts]


def _reference_propose(tables, context, k):
    """Each proposal: the label of the longest context in the unpruned tables, fed back."""
    out, window = [], list(context)
    for _ in range(k):
        label = None
        for n in range(1, len(tables) + 1):
            if n > len(window):
                break
            found = tables[n - 1].get(tuple(window[-n:]))
            if found is None:
                break
            label = found
        if label is None:
            break
        out.append(label)
        window.append(label)
    return out


def test_pruned_table_proposes_what_the_full_table_does():
    tokens = _text(4000, seed=1)
    rng = np.random.default_rng(2)
    choices = rng.integers(3, V, size=len(tokens))  # any labels: pruning must not depend on them
    choices[rng.random(len(tokens)) < 0.7] = int(tokens[1])  # one choice for most: much to prune
    order = 6
    full = _reference_tables(tokens, choices, order)
    draft = DistilledDraft(*distill_tables(tokens, choices, V, order), vocab_size=V)
    assert draft.size < sum(len(t) for t in full)  # something was pruned
    contexts = [tokens[max(0, i - 7) : i + 1].tolist() for i in range(0, len(tokens), 7)]
    contexts += [rng.integers(3, V, size=int(rng.integers(1, 9))).tolist() for _ in range(300)]
    for context in contexts:
        assert draft.propose(context, 5)[0] == _reference_propose(full, context, 5), context


def test_the_table_holds_the_target_choices_not_the_text():
    """With a bigram target, the one-token contexts map to the target's argmax after each token."""
    vocab = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *(f"w{i}" for i in range(V - 4))]
    tokens = _text(2000, seed=3)
    target = NGramModel.fit([np.array([SOS_ID, *tokens[:1000], EOS_ID])], 2, vocab, "add-k", k=0.5)
    draft = DistilledDraft.distill(target, tokens[1000:], order=3, block_size=64)
    for token in set(tokens[1000:].tolist()):
        p = target.log_probs(torch.tensor([[token]]))[0, 0]  # (V,) after this token
        assert draft.tables[0][token] == int(p.argmax())


def test_target_choices_equal_one_window_at_a_time():
    model = _transformer(block_size=16)
    tokens = _text(75, seed=4)  # 4 full windows of 16 and a shorter one
    got = target_choices(model, tokens, block_size=16)
    want = np.concatenate([model.log_probs(torch.from_numpy(tokens[None, s : s + 16])).argmax(-1)[0].numpy()
                           for s in range(0, 75, 16)])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("k", [1, 4])
def test_speculative_greedy_with_a_distilled_draft_is_plain_greedy(k):
    model = _transformer()
    draft = DistilledDraft.distill(model, _text(3000), order=5)
    prompt = [SOS_ID, 5, 6, 7, 5]
    want = greedy_search(model, [prompt], max_new_tokens=24, eos_id=EOS_ID).rows()[0]
    out = speculative_generate(model, draft, [prompt], temperature=0, max_new_tokens=24, k=k,
                               adaptive=False)
    assert out.tokens.tolist() == want
    assert out.stats.accepted > 0  # the table agreed somewhere
    # one charged unit a proposal made (proposals after an [EOS] are made, then cut)
    assert out.stats.draft_forwards == draft.proposals >= out.stats.proposed


def test_sampling_with_a_distilled_draft_repeats_with_the_seed():
    model = _transformer()
    draft = DistilledDraft.distill(model, _text(2000), order=4)
    runs = [speculative_generate(model, draft, [[SOS_ID, 5, 6]], temperature=1.0, seed=7,
                                 max_new_tokens=20).tokens.tolist() for _ in range(2)]
    assert runs[0] == runs[1]


def test_the_schedule_charges_its_proposal_cost():
    model = _transformer()
    draft = DistilledDraft.distill(model, _text(500), order=3)
    cost = RoundCost.of(model, draft, one_pass=True, plain_greedy=True)
    assert cost.draft_call == 0.0
    assert 0 < cost.draft_step < 1  # a proposal costs a fraction of a target step


def test_save_and_load_round_trip(tmp_path):
    model = _transformer()
    draft = DistilledDraft.distill(model, _text(1500), order=5)
    draft.source = {"corpus": "toy", "tokens": "1500"}
    path = draft.save(tmp_path / "draft.safetensors")
    assert draft.save(tmp_path / "again.safetensors").read_bytes() == path.read_bytes()  # the same bytes
    loaded = DistilledDraft.load(path)
    assert (loaded.order, loaded.vocab_size, loaded.tables, loaded.source) == (
        draft.order, draft.vocab_size, draft.tables, draft.source)
    for context in ([5], [5, 6, 7], [9, 9, 3, 4]):
        assert loaded.propose(context, 6)[0] == draft.propose(context, 6)[0]


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        DistilledDraft.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(FormatError, match="not a readable distilled draft"):
        DistilledDraft.load(junk)
    from safetensors.numpy import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(other))
    with pytest.raises(FormatError, match="not a distilled draft"):
        DistilledDraft.load(other)


def test_bad_input_is_a_one_line_error():
    model = _transformer()
    with pytest.raises(ConfigError, match="order must be an integer ≥ 2"):
        DistilledDraft.distill(model, _text(100), order=1)
    with pytest.raises(ConfigError, match="use order ≤"):
        DistilledDraft.distill(model, _text(100), order=longest_context(V) + 2)
    with pytest.raises(MismatchError, match="outside the target's vocabulary"):
        DistilledDraft.distill(model, [3, 4, V], order=3)
    with pytest.raises(ConfigError, match="at least 2 tokens"):
        DistilledDraft.distill(model, [3], order=3)
    with pytest.raises(ConfigError, match="rollouts must be an integer ≥ 0"):
        DistilledDraft.distill(model, _text(100), order=3, rollouts=-1)



def test_longest_context_fits_an_int64_key():
    for vocab_size in (12, 68, 74, 256, 50_257):
        n = longest_context(vocab_size)
        assert vocab_size ** (n + 1) <= 2**63 - 1 < vocab_size ** (n + 2)


def test_a_text_shorter_than_the_contexts():
    model = _transformer()
    draft = DistilledDraft.distill(model, [3, 4, 5], order=8)
    assert draft.order == 8 and [len(t) for t in draft.tables[3:]] == [0] * 4
    assert draft.propose([9, 3], 2)[0] == _reference_propose(
        _reference_tables(np.array([3, 4, 5]), target_choices(model, np.array([3, 4, 5])), 8), [9, 3], 2)


def test_only_the_counted_positions_count():
    tokens = _text(3000, seed=5)
    rng = np.random.default_rng(6)
    choices = rng.integers(3, V, size=len(tokens))
    counted = rng.random(len(tokens)) < 0.5
    full = _reference_tables(tokens, choices, 5, counted)
    draft = DistilledDraft(*distill_tables(tokens, choices, V, 5, counted), vocab_size=V)
    for i in range(0, len(tokens), 11):
        context = tokens[max(0, i - 6) : i + 1].tolist()
        assert draft.propose(context, 4)[0] == _reference_propose(full, context, 4), context


def test_rollouts_stop_at_every_passage_once():
    model = _transformer(block_size=64)
    tokens = _text(40, seed=9)  # 40 − 32 + 1 = 9 passages of 32 tokens
    x, _, counted = rollout_streams(model, tokens, rollouts=10**12, rollout_length=4, context=4)
    assert len(x) == 9 * (ROLLOUT_PROMPT + 4 - 1) and counted.sum() == 9 * 4


def test_rollouts_are_the_target_greedy_continuations():
    model = _transformer(block_size=64)
    tokens = _text(2000, seed=7)
    x, chosen, counted = rollout_streams(model, tokens, rollouts=3, rollout_length=10, context=4)
    P = ROLLOUT_PROMPT  # 32 ≤ half the block
    rows, chosen, counted = x.reshape(3, -1), chosen.reshape(3, -1), counted.reshape(3, -1)
    for r, start in enumerate(np.linspace(0, len(tokens) - P, 3).astype(int)):
        prompt = tokens[start : start + P].tolist()
        want = greedy_search(model, [prompt], max_new_tokens=10, eos_id=None).rows()[0]
        assert rows[r].tolist() == prompt + want[:-1]  # each position's token …
        assert chosen[r].tolist() == prompt[1:] + want  # … and the one after it
    assert not counted[:, : P - 1].any() and counted[:, P - 1 :].all()


def test_rollouts_teach_the_states_decoding_visits():
    """From a passage the target continued during distillation, the draft with rollouts proposes its
    greedy continuation more often than the draft of the text alone."""
    model = _transformer(block_size=64)
    tokens = _text(1500, seed=8)
    with_rollouts = DistilledDraft.distill(model, tokens, order=5, rollouts=8, rollout_length=24)
    text_only = DistilledDraft.distill(model, tokens, order=5, rollouts=0)
    prompt = tokens[:ROLLOUT_PROMPT].tolist()  # the first rollout's passage
    new = greedy_search(model, [prompt], max_new_tokens=24, eos_id=None).rows()[0]

    def agreement(draft):
        return sum(draft.propose(prompt + new[:i], 1)[0] == [y] for i, y in enumerate(new))

    assert agreement(with_rollouts) > agreement(text_only)
