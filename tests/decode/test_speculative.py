"""Speculative decoding: greedy equals plain greedy for every kind of draft, the acceptance rule
preserves p (exactly and by sampling), the KV cache and draft states roll back, bad input."""

import itertools

import numpy as np
import pytest
import torch

import arlm.decode.speculative as speculative
import arlm.models.numpy_gemv as numpy_gemv
from arlm.decode.processors import build_processors
from arlm.decode.search import greedy_search
from arlm.decode.speculative import (
    DraftSchedule,
    ModelDraft,
    NGramDraft,
    PromptLookupDraft,
    RoundCost,
    Sampler,
    TargetVerifier,
    accept_or_resample,
    acceptance_probability,
    residual_distribution,
    speculative_generate,
)
from arlm.errors import ConfigError, MismatchError
from arlm.models.ngram import NGramModel
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID
from toy_models import BigramTable

V = 12


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on a shared small CPU


PROMPT = [SOS_ID, 5, 6, 7, 5, 6, 9, 4]
# 99.9% quantiles of chi-square with df degrees of freedom (a correct sampler fails 1 run in 1000)
CHI2_999 = {4: 18.47, 8: 26.12, 15: 37.70}


def _transformer(seed, vocab_size=V, d_model=16, n_layer=2, std=0.4, block_size=64):
    """A random tiny Transformer with large weights, so that its distributions are peaked and its
    greedy text varied (a GPT-2 init is almost uniform and, with tied weights, repeats one token)."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=2,
                            d_model=d_model, tie_weights=False)
    model = TransformerLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
    return model


def _perturbed(model, seed, noise=0.1):
    """The same architecture with every weight moved a little: a draft that often agrees."""
    torch.manual_seed(seed)
    other = type(model)(model.config).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in other.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))
    return other


def _ngram(vocab_size=V, seed=0):
    """A trigram model fit on a tiny random token stream over the same ids."""
    rng = np.random.default_rng(seed)
    vocab = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *(f"w{i}" for i in range(vocab_size - 4))]
    data = [np.array([SOS_ID, *rng.integers(3, vocab_size, size=int(rng.integers(3, 15))), EOS_ID])
            for _ in range(200)]
    return NGramModel.fit(data, 3, vocab, "mkn", discount_fallback=True)


def _rnn(seed=0, std=0.6):
    """A random tiny LSTM with large weights (varied greedy text, as for :func:`_transformer`)."""
    torch.manual_seed(seed)
    model = RNNLM(RNNConfig(vocab_size=V, cell="lstm", d_embed=8, d_hidden=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
    return model


TARGET = _transformer(2)
# a cost model under which any draft pays when it agrees (the built-in estimates judge a draft as
# big as these tiny targets too costly, and never call it)
CHEAP = RoundCost(verify_first=0.1, verify_per_token=0.05, draft_call=0.0, draft_step=0.05)
SCHEDULES = {"fixed": dict(adaptive=False), "adaptive": {}, "adaptive, cheap drafts": dict(cost=CHEAP)}
DRAFTS = {
    "random transformer": lambda: _transformer(1, d_model=8, n_layer=1),
    "perturbed transformer": lambda: _perturbed(TARGET, 2),
    "ngram": _ngram,
    "rnn": _rnn,
    "prompt lookup": PromptLookupDraft,
    "the target itself": lambda: TARGET,
}


# ---------------------------------------------------------------------------------------------
# Greedy: exactly plain greedy, whatever the draft
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("draft", sorted(DRAFTS))
def test_greedy_speculative_equals_plain_greedy(draft, k, schedule):
    plain = greedy_search(TARGET, [PROMPT], max_new_tokens=40, eos_id=None)
    spec = speculative_generate(TARGET, DRAFTS[draft](), PROMPT, k=k, max_new_tokens=40,
                                temperature=0, eos_id=None, **SCHEDULES[schedule])
    assert spec.tokens.tolist() == plain.rows()[0]
    torch.testing.assert_close(spec.log_probs, plain.log_probs[0], atol=1e-5, rtol=1e-5)
    s = spec.stats
    assert spec.stop_reason == "length" and s.new_tokens == 40
    assert s.target_forwards == s.rounds  # a Transformer target verifies in one pass
    assert s.new_tokens == s.rounds + s.accepted  # each round: accepted tokens + one of the target's
    assert 0 <= s.accepted <= s.proposed <= k * s.rounds
    if draft == "perturbed transformer" and schedule != "adaptive":  # both branches of the rule
        assert 0 < s.accepted < s.proposed  # ran: agreement and rollback


@pytest.mark.parametrize("schedule", ["fixed", "adaptive, cheap drafts"])
def test_a_draft_equal_to_the_target_is_always_accepted(schedule):
    spec = speculative_generate(TARGET, TARGET, PROMPT, k=4, max_new_tokens=40, temperature=0,
                                eos_id=None, **SCHEDULES[schedule])
    s = spec.stats
    assert s.acceptance_rate == 1.0 and s.proposed == 32
    assert s.target_forwards == 8 and s.tokens_per_target_forward == 5.0  # k + 1 per pass
    assert s.mean_draft_length == 4.0 and s.rounds_off == 0


def test_a_draft_as_costly_as_the_target_is_never_called():
    """Each proposal costs a draft step as dear as a target step: no acceptance rate could pay."""
    spec = speculative_generate(TARGET, _perturbed(TARGET, 2), PROMPT, k=4, max_new_tokens=20,
                                temperature=0, eos_id=None)
    s = spec.stats
    assert s.rounds_off == s.rounds == s.target_forwards == 20
    assert s.draft_rounds == s.proposed == s.draft_forwards == s.probes == 0


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_greedy_stops_on_eos_as_plain_greedy_does(schedule):
    target = _transformer(4, vocab_size=6, d_model=8)
    prompt = [SOS_ID, 4]
    plain = greedy_search(target, [prompt], max_new_tokens=30)
    assert plain.stop_reason == ["eos"]  # this seed reaches [EOS]: the case under test
    for draft in (_transformer(6, vocab_size=6, d_model=8), PromptLookupDraft(), target):
        spec = speculative_generate(target, draft, prompt, k=3, max_new_tokens=30, temperature=0,
                                    **SCHEDULES[schedule])
        assert spec.tokens.tolist() == plain.rows()[0] and spec.stop_reason == "eos"


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("draft", ["random transformer", "prompt lookup", "the target itself"])
def test_greedy_with_processors_equals_plain_greedy_with_them(draft, schedule):
    """The penalties depend on the prefix: verifying position i must see the accepted x_<i."""
    kw = dict(max_new_tokens=30, eos_id=None, repetition_penalty=1.5, no_repeat_ngram_size=3,
              banned=[7])
    plain = greedy_search(TARGET, [PROMPT], **kw)
    spec = speculative_generate(TARGET, DRAFTS[draft](), PROMPT, k=3, temperature=0, **kw,
                                **SCHEDULES[schedule])
    assert spec.tokens.tolist() == plain.rows()[0]
    assert 7 not in spec.tokens.tolist()


def test_a_target_without_step_all_is_fed_token_by_token_and_still_exact():
    target = _rnn(3)
    plain = greedy_search(target, [PROMPT], max_new_tokens=25, eos_id=None)
    spec = speculative_generate(target, _perturbed(target, 9), PROMPT, k=3, max_new_tokens=25,
                                temperature=0, eos_id=None, adaptive=False)
    assert spec.tokens.tolist() == plain.rows()[0]
    s = spec.stats
    assert s.target_forwards == s.rounds + s.proposed  # one call for the context, one per proposal
    assert 0 < s.accepted < s.proposed
    # each proposal costs a target step: it can never pay, and the adaptive schedule never proposes
    spec = speculative_generate(target, _perturbed(target, 9), PROMPT, k=3, max_new_tokens=25,
                                temperature=0, eos_id=None, cost=None)
    assert spec.tokens.tolist() == plain.rows()[0] and spec.stats.proposed == 0


# ---------------------------------------------------------------------------------------------
# The schedule: the draft length follows the acceptance; speculation switches off and on again
# ---------------------------------------------------------------------------------------------

def test_the_speedup_of_a_round_is_the_expected_tokens_over_the_cost():
    schedule = DraftSchedule(6, CHEAP)
    a = schedule.acceptance  # the prior: 0.75, for the first proposal and the later ones alike
    assert a == schedule.acceptance_next == 0.75
    for k in (1, 3, 6):
        want = (1 - a ** (k + 1)) / (1 - a) / (1 + CHEAP.extra(k, k))
        assert schedule.speedup(k) == pytest.approx(want)
    schedule.accepted, schedule.rejected = 1.0, 3.0  # a₁ = 0.25, a = 0.9
    schedule.accepted_next, schedule.rejected_next = 9.0, 1.0
    for k in (1, 3, 6):
        want = (1 + 0.25 * sum(0.9**i for i in range(k))) / (1 + CHEAP.extra(k, k))
        assert schedule.speedup(k) == pytest.approx(want)
    k, speedup = schedule.best_length()
    assert speedup == pytest.approx(max(schedule.speedup(j) for j in range(1, 7)))
    assert schedule.speedup(k) == pytest.approx(speedup)


def test_agreement_in_runs_asks_for_longer_rounds():
    """A draft whose first proposal is often wrong but whose later ones are right once the first was
    (a copy, the inside of a word): the first and the later proposals are counted apart, and the
    length grows to k_max, where one shared rate (0.8 here: 8 accepted for 2 rejected) stops at 6."""
    schedule = DraftSchedule(8, CHEAP)
    for _ in range(10):  # rounds of 8: all rejected, all rejected, all accepted
        for accepted in (0, 0, 8):
            schedule.update(8, accepted, 8)
    assert schedule.acceptance < 0.45 and schedule.acceptance_next > 0.9
    assert schedule.k == 8 and schedule.on
    shared = 8 / (8 + 2)  # accepted / (accepted + rejected) of each three rounds, as one rate
    one_rate = max(range(1, 9), key=lambda k: sum(shared**i for i in range(k + 1)) / (1 + CHEAP.extra(k, k)))
    assert one_rate == 6


def test_a_draft_is_called_only_where_some_round_could_pay():
    """A round pays at best k + 1 tokens for 1 + c(k) steps: with a costly first proposal and cheap
    further ones (a target that streams its weights), one proposal never pays and four can."""
    streamed = RoundCost(verify_first=1.2, verify_per_token=0.25, draft_call=0.01, draft_step=0.0)
    assert not streamed.can_pay(1) and streamed.can_pay(4)
    assert DraftSchedule(1, streamed).never_pays and not DraftSchedule(4, streamed).never_pays
    per_token = RoundCost(verify_first=1.0, verify_per_token=1.0, draft_call=0.0, draft_step=0.0)
    assert not per_token.can_pay(16)  # verified a step a token: never
    assert CHEAP.can_pay(1)


@pytest.mark.parametrize("accepted,rejected", [(6.0, 2.0), (0.5, 4.0), (40.0, 0.3), (0.0, 1.0)])
@pytest.mark.parametrize("cost", [CHEAP, RoundCost(1.2, 0.25, 0.01, 0.0), RoundCost(0.3, 0.08, 0.0, 0.3)])
def test_the_best_length_and_whether_any_pays_equal_a_search_over_every_length(accepted, rejected, cost):
    """best_length stops at the speed-up's peak and can_pay looks at the ends only: both equal the
    search over every length, and a huge k_max (--draft-tokens 10**9) costs no more than a small one."""
    schedule = DraftSchedule(40, cost)
    schedule.accepted, schedule.rejected = accepted, rejected
    speedups = [schedule.speedup(k) for k in range(1, 41)]
    best = max(range(40), key=lambda i: (speedups[i], -i))
    assert schedule.best_length() == (best + 1, pytest.approx(speedups[best]))
    for k_max in (1, 2, 7, 40):
        assert cost.can_pay(k_max) == any(k + 1 > 1 + cost.extra(k, k) for k in range(1, k_max + 1))
    huge = DraftSchedule(10**9, cost)
    huge.accepted, huge.rejected = accepted, rejected
    assert huge.best_length()[0] == best + 1 if best < 39 else huge.best_length()[0] >= 40
    assert cost.can_pay(10**9) == (cost.verify_per_token + cost.draft_step < 1 or cost.can_pay(1))


def test_a_target_that_streams_its_weights_is_costed_as_such(monkeypatch):
    """A CPU target too large for the cache (here: the cache said to be tiny) verifies at the streamed
    costs; then a one-proposal draft is never called (plain decoding), a longer one is."""
    target = TransformerLM(TransformerConfig(vocab_size=V, block_size=64, n_layer=1, n_head=2, d_model=16))
    target.eval()
    assert not speculative.streams_weights(target) and not speculative.streams_weights(PromptLookupDraft())
    cheap = RoundCost.of(target, PromptLookupDraft(), one_pass=True)
    monkeypatch.setattr(numpy_gemv, "last_level_cache_bytes", lambda: 1024)
    assert speculative.streams_weights(target)
    cost = RoundCost.of(target, PromptLookupDraft(), one_pass=True)
    assert (cost.verify_first, cost.verify_per_token) == (speculative.VERIFY_FIRST_STREAMED,
                                                          speculative.VERIFY_PER_TOKEN_STREAMED)
    assert cost.verify_first > cheap.verify_first and cost.verify_per_token > cheap.verify_per_token
    prompt = [[SOS_ID, 5, 6, 7, 5, 6, 7, 5, 6, 7]]
    plain = greedy_search(target, prompt, max_new_tokens=12, eos_id=None).rows()[0]
    one = speculative_generate(target, PromptLookupDraft(), prompt, k=1, max_new_tokens=12, temperature=0,
                               eos_id=None)
    assert one.tokens.tolist() == plain and one.stats.draft_rounds == 0
    four = speculative_generate(target, PromptLookupDraft(), prompt, k=4, max_new_tokens=12, temperature=0,
                                eos_id=None)
    assert four.tokens.tolist() == plain and four.stats.draft_rounds > 0


def test_the_draft_length_follows_the_acceptance():
    """All accepted: k stays at its maximum; then rejections: it shrinks, one length after another,
    until speculation switches off; all accepted again (probes): back on and back up to k."""
    schedule = DraftSchedule(6, CHEAP)
    lengths = []
    for outcome in "aaaa" + "r" * 40 + "a" * 120:  # each round the draft was called: all (a) or none (r)
        k = schedule.next_length()
        lengths.append(k)
        if k:
            schedule.update(k, k if outcome == "a" else 0, k)
    assert lengths[:4] == [6, 6, 6, 6]
    shrinking = lengths[4 : lengths.index(0)]
    assert shrinking == sorted(shrinking, reverse=True) and shrinking[-1] < 6  # shrinks, then off
    assert lengths[-10:] == [6] * 10  # the draft agrees again: back on, at the maximum


def test_a_fixed_schedule_proposes_k_every_round():
    schedule = DraftSchedule(3, RoundCost(1.0, 1.0, 1.0, 1.0), adaptive=False)
    for _ in range(5):
        assert schedule.next_length() == 3
        schedule.update(3, 0, 3)


def test_the_switch_goes_off_on_losing_rounds_and_probes_with_growing_gaps():
    schedule = DraftSchedule(4, CHEAP)
    calls = []
    for i in range(200):
        k = schedule.next_length()
        if k:
            calls.append((i, k))
            schedule.update(k, 0, k)  # a useless draft
    rounds = [i for i, _ in calls]
    first = next(n for n in range(len(rounds)) if rounds[n] != n)  # the first round after a pause
    assert 2 <= first <= 16  # losing rounds use up the prior (counts kept over ~10 rounds)
    gaps = [b - a - 1 for a, b in itertools.pairwise(rounds[first - 1 :])]
    assert gaps == [4, 8, 16, 32, 64, 64][: len(gaps)] and len(gaps) >= 5  # plain rounds between probes
    assert all(k == 2 for _, k in calls[first:])  # a probe proposes 2 tokens


class _ScriptedDraft:
    """Proposes a token the target never picks until ``agree_from`` tokens were generated, then the
    target's own greedy continuation (read from ``reference``, prompt included); records the number of
    generated tokens at each call."""

    def __init__(self, reference, prompt_len, agree_from):
        self.reference, self.prompt_len, self.agree_from = reference, prompt_len, agree_from
        self.calls = []

    def propose(self, context, k, sampler):
        t = len(context)
        self.calls.append(t - self.prompt_len)
        if t - self.prompt_len >= self.agree_from:
            return self.reference[t : t + k], None
        right = self.reference[t]
        return [4 if right != 4 else 5] * k, None


def test_speculation_switches_off_on_a_useless_draft_and_on_again_when_it_agrees():
    target = _transformer(2, block_size=160)
    new, agree_from = 120, 40
    plain = greedy_search(target, [PROMPT], max_new_tokens=new, eos_id=None).rows()[0]
    draft = _ScriptedDraft(PROMPT + plain, len(PROMPT), agree_from)
    spec = speculative_generate(target, draft, PROMPT, k=4, max_new_tokens=new, temperature=0,
                                eos_id=None, cost=CHEAP)
    assert spec.tokens.tolist() == plain
    s = spec.stats
    useless = [c for c in draft.calls if c < agree_from]
    assert len(useless) <= 18 and s.rounds_off >= agree_from - len(useless)  # off most of the time
    assert s.probes >= 3
    agreeing = [c for c in draft.calls if c >= agree_from]
    assert agreeing[0] < 80 and s.accepted >= 30  # on again soon after, and proposing k = 4
    assert all(b - a == 5 for a, b in itertools.pairwise(agreeing[2:-1]))


def test_a_probe_is_checked_by_plain_steps_not_a_verifying_pass(monkeypatch):
    """While speculation is off a probe's proposals are checked against the target's plain steps: the
    target verifies proposals only in the rounds that speculate (useless draft: a handful), and the
    probes' matches still switch speculation back on when the draft agrees."""
    target = _transformer(2, block_size=160)
    new, agree_from = 120, 40
    plain = greedy_search(target, [PROMPT], max_new_tokens=new, eos_id=None).rows()[0]
    verified: list[int] = []  # proposals per verifying pass
    verify = TargetVerifier.verify
    monkeypatch.setattr(TargetVerifier, "verify",
                        lambda self, context, proposals: verified.append(len(proposals)) or verify(
                            self, context, proposals))
    draft = _ScriptedDraft(PROMPT + plain, len(PROMPT), agree_from)
    spec = speculative_generate(target, draft, PROMPT, k=4, max_new_tokens=new, temperature=0,
                                eos_id=None, cost=CHEAP)
    assert spec.tokens.tolist() == plain
    s = spec.stats
    assert s.probes >= 3 and sum(verified) == s.proposed  # no probe's proposal reached a verifying pass
    assert len([n for n in verified if n]) == s.draft_rounds - s.probes  # verified: the speculating rounds
    assert s.accepted >= 30  # on again once the draft agrees


@pytest.mark.parametrize("draft", ["prompt lookup", "random transformer", "perturbed transformer"])
def test_sampling_with_the_schedule_is_seeded(draft):
    runs = [speculative_generate(TARGET, DRAFTS[draft](), PROMPT, k=4, max_new_tokens=40, seed=3,
                                 eos_id=None, cost=CHEAP) for _ in range(2)]
    assert torch.equal(runs[0].tokens, runs[1].tokens) and runs[0].stats == runs[1].stats
    assert runs[0].stats.draft_rounds > 0


def test_prompt_lookup_finds_what_a_plain_scan_finds():
    """The byte search returns the most recent earlier occurrence, as a token-by-token scan does."""
    sampler = Sampler(build_processors(), False, None, torch.device("cpu"))
    look = PromptLookupDraft(max_ngram=3)

    def scan(context, k):
        T = len(context)
        for n in range(3, 0, -1):
            for start in range(T - n - 1, -1, -1):
                if n < T and context[start : start + n] == context[T - n :]:
                    return context[start + n : start + n + k]
        return []

    rng = np.random.default_rng(0)
    for _ in range(300):
        context = rng.integers(0, int(rng.integers(2, 300)), size=int(rng.integers(1, 40))).tolist()
        assert look.propose(context, 3, sampler) == (scan(context, 3), None)


# ---------------------------------------------------------------------------------------------
# The acceptance rule in isolation: the output of one step is distributed as p
# ---------------------------------------------------------------------------------------------


def _random_pq(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g, dtype=torch.float64) ** 3
    q = torch.rand(n, generator=g, dtype=torch.float64) ** 3
    p[0] = 0.0  # a token the target never emits but the draft may propose
    q[1] = 0.0  # a token the draft never proposes
    return p / p.sum(), q / q.sum()


def _one_step_distribution(p, q):
    """P(y) = Σ_x q(x) [a(x) δ_{xy} + (1 − a(x)) r(y)], built from the functions under test."""
    r = residual_distribution(p, q)
    out = torch.zeros_like(p)
    for x in range(len(p)):
        if q[x] > 0:
            a = acceptance_probability(p, q, x)
            out[x] += q[x] * a
            out += q[x] * (1 - a) * r
    return out


@pytest.mark.parametrize("seed", range(5))
def test_one_step_of_the_rule_is_distributed_exactly_as_p(seed):
    p, q = _random_pq(seed)
    torch.testing.assert_close(_one_step_distribution(p, q), p, atol=1e-12, rtol=0)
    x = int(q.argmax())  # a deterministic draft: q is the point mass on x
    point = torch.zeros_like(q).index_fill(0, torch.tensor(x), 1.0)
    torch.testing.assert_close(_one_step_distribution(p, point), p, atol=1e-12, rtol=0)
    torch.testing.assert_close(residual_distribution(p, p), p)  # p = q: nothing is ever rejected


def test_draws_of_the_rule_follow_p():
    p, q = _random_pq(7)
    g = torch.Generator().manual_seed(0)
    n = 20000
    xs = torch.multinomial(q, n, replacement=True, generator=g).tolist()
    counts = np.bincount([accept_or_resample(p, q, x, g)[0] for x in xs], minlength=len(p))
    chi2, df = _chi2(counts, p.numpy())
    assert df == 4 and chi2 < CHI2_999[df]


def _chi2(counts, p):
    expected = p * counts.sum()
    support = expected > 0
    assert counts[~support].sum() == 0, "a token outside the support was drawn"
    chi2 = (((counts - expected) ** 2)[support] / expected[support]).sum()
    return chi2, int(support.sum()) - 1


# ---------------------------------------------------------------------------------------------
# Sampling end to end: the first two tokens are distributed as plain sampling's
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # 3000 seeded generations per case
@pytest.mark.parametrize("draft, settings", [
    ("bigram", {}),
    ("bigram", {"temperature": 0.7, "top_k": 3}),
    ("prompt lookup", {}),
])
def test_speculative_sampling_of_two_tokens_matches_the_target(draft, settings):
    vocab = 6  # tokens 2..5 can follow: 16 outcomes for two tokens
    target = _transformer(1, vocab_size=vocab, d_model=8, n_layer=1)
    prompt = [SOS_ID, 4, 5, 4]  # prompt lookup proposes 5, 4 (what followed the last "4")
    pipe = build_processors(**settings)

    def processed(context):  # the target's processed next-token distribution (V,)
        with torch.no_grad():
            lp = target.log_probs(torch.tensor([context]))[:, -1]  # (1, V)
        return torch.softmax(pipe(torch.tensor([context]), lp).double(), -1)[0]

    first = processed(prompt)
    joint = torch.stack([first[a] * processed([*prompt, a]) for a in range(vocab)])  # (V, V)
    n = 3000
    counts = np.zeros(vocab * vocab, dtype=np.int64)
    proposer = BigramTable(vocab, seed=1) if draft == "bigram" else PromptLookupDraft()
    for seed in range(n):  # max_new_tokens=3, k=2: the first round verifies two proposals
        out = speculative_generate(target, proposer, prompt, k=2, max_new_tokens=3, eos_id=None,
                                   seed=seed, adaptive=False, **settings)  # the rule, every round
        a, b = out.tokens[:2].tolist()
        counts[a * vocab + b] += 1
    chi2, df = _chi2(counts, joint.flatten().numpy())
    assert chi2 < CHI2_999[df]


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_same_seed_same_tokens_and_stats_add_up(schedule):
    draft = _transformer(1, d_model=8, n_layer=1)
    runs = [speculative_generate(TARGET, draft, PROMPT, k=3, max_new_tokens=30, seed=s,
                                 **SCHEDULES[schedule]) for s in (4, 4, 5)]
    assert torch.equal(runs[0].tokens, runs[1].tokens) and runs[0].stats == runs[1].stats
    assert not torch.equal(runs[0].tokens, runs[2].tokens)
    gen = speculative_generate(TARGET, draft, PROMPT, k=3, max_new_tokens=30,
                               generator=torch.Generator().manual_seed(4), **SCHEDULES[schedule])
    assert torch.equal(gen.tokens, runs[0].tokens)
    for r in runs:
        ids = r.tokens.tolist()
        assert r.stats.new_tokens == len(ids) and SOS_ID not in ids and PAD_ID not in ids
        ended_on_accepted_eos = r.stats.new_tokens == r.stats.rounds + r.stats.accepted - 1
        assert r.stats.new_tokens == r.stats.rounds + r.stats.accepted or (
            ended_on_accepted_eos and r.stop_reason == "eos")  # an accepted [EOS] gets no bonus
        if r.stop_reason == "eos":
            assert ids.index(EOS_ID) == len(ids) - 1
        else:
            assert len(ids) == 30 and EOS_ID not in ids
        with torch.no_grad():  # the log-probs are the target's
            ref = TARGET.score(torch.tensor([PROMPT + ids]))[0, len(PROMPT) - 1 :].double()
        torch.testing.assert_close(r.log_probs, ref, atol=1e-5, rtol=1e-5)


def test_sampling_reaches_eos_and_stops_there():
    target, draft = _transformer(5, vocab_size=6, d_model=8), BigramTable(6, seed=2)
    reasons = set()
    for seed in range(20):
        r = speculative_generate(target, draft, [SOS_ID], k=3, max_new_tokens=15, seed=seed,
                                 adaptive=False)
        ids = r.tokens.tolist()
        reasons.add(r.stop_reason)
        assert (ids.index(EOS_ID) == len(ids) - 1) if r.stop_reason == "eos" else EOS_ID not in ids
    assert reasons == {"eos", "length"}


# ---------------------------------------------------------------------------------------------
# Rollback: the target's KV cache and the draft's state follow the accepted tokens
# ---------------------------------------------------------------------------------------------


def _filled(cache):
    return cache.k[:, :, :, : cache.length], cache.v[:, :, :, : cache.length]


def test_rollback_leaves_the_cache_equal_to_a_fresh_prefill():
    verifier = TargetVerifier(TARGET)
    context = PROMPT[:5]
    first = verifier.verify(context, [9, 10, 11])  # (4, V)
    with torch.no_grad():
        full = TARGET.log_probs(torch.tensor([[*context, 9, 10, 11]]))[0]  # (T, V)
    torch.testing.assert_close(first, full[len(context) - 1 :], atol=1e-5, rtol=1e-5)

    accepted = [*context, 9, 4]  # 9 accepted, 10 rejected and replaced by 4
    second = verifier.verify(accepted, [8, 7])  # crops 10, 11; feeds 4, 8, 7
    fresh = TARGET.start(1)
    with torch.no_grad():
        TARGET.step(torch.tensor([[*accepted, 8, 7]]), fresh)
        full = TARGET.log_probs(torch.tensor([[*accepted, 8, 7]]))[0]
    cache = verifier.state
    assert cache.length == fresh.length == len(accepted) + 2
    for got, want in zip(_filled(cache), _filled(fresh), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, full[len(accepted) - 1 :], atol=1e-5, rtol=1e-5)
    assert verifier.forwards == 2  # one pass per verification


class _CountingModel:
    """An ARModel that counts the tokens fed to ``step`` (to see what a rollback re-feeds)."""

    def __init__(self, model):
        self.model, self.vocab_size, self.fed = model, model.vocab_size, 0

    def log_probs(self, tokens):
        return self.model.log_probs(tokens)

    def score(self, tokens):
        return self.model.score(tokens)

    def start(self, batch_size):
        return self.model.start(batch_size)

    def step(self, tokens, state):
        self.fed += tokens.shape[1]
        return self.model.step(tokens, state)


@pytest.mark.parametrize("draft", ["random transformer", "ngram", "rnn"])
def test_a_model_draft_follows_the_context_across_rollbacks(draft):
    """After any sequence of rounds (accepting a few proposals, then another token), the draft's
    proposals are its own greedy continuation of the context, as if it had just been prefilled;
    and a rollback re-feeds only the accepted tokens (cropped cache or restored copy), never the
    whole context."""
    model = DRAFTS[draft]()
    counting = _CountingModel(model)
    proposer = ModelDraft(counting)
    sampler = Sampler(build_processors(temperature=0), True, None, torch.device("cpu"), eos_id=None)
    context = list(PROMPT)
    rounds = [(0, 10), (2, 11), (3, 4), (1, 9)]  # accept `keep` proposals, then add `other`
    for keep, other in rounds:
        proposals, q = proposer.propose(context, 3, sampler)
        own = greedy_search(model, [context], max_new_tokens=3, eos_id=None).rows()[0]
        assert proposals == own and q is None
        context = context + proposals[:keep] + [other]
    # the prompt once, then per round at most the accepted tokens + 1, and 2 proposals (the 3rd is
    # never fed)
    assert counting.fed <= len(PROMPT) + sum(keep + 1 for keep, _ in rounds[:-1]) + 2 * len(rounds)


def test_an_ngram_draft_proposes_as_a_model_draft_would_through_its_greedy_path():
    """An n-gram model becomes an NGramDraft: greedy proposals with no processors come from its
    greedy_continuation (no step calls), the same tokens a ModelDraft of it proposes; sampling and
    processors go through the ModelDraft path (with the draft's q); and its cost estimate follows."""
    ngram = _ngram()
    greedy = Sampler(build_processors(temperature=0), True, None, torch.device("cpu"), eos_id=None)
    processed = Sampler(build_processors(temperature=0, repetition_penalty=1.5), True, None,
                        torch.device("cpu"), eos_id=None)
    sampling = Sampler(build_processors(temperature=1.0), False, torch.Generator().manual_seed(0),
                       torch.device("cpu"), eos_id=None)
    draft, reference = NGramDraft(ngram), ModelDraft(ngram)
    assert isinstance(speculative._as_draft(ngram, TARGET), NGramDraft)
    context = list(PROMPT)
    for extra in ([], [7, 9], [4]):
        context += extra
        before = draft.general.forwards
        assert draft.propose(context, 5, greedy) == reference.propose(context, 5, greedy)
        assert draft.general.forwards == before  # the greedy path makes no step calls
        assert draft.propose(context, 5, processed)[0] == reference.propose(context, 5, processed)[0]
    tokens, q = draft.propose(context, 3, sampling)
    assert len(tokens) == 3 and q.shape == (3, V)
    fast = RoundCost.of(TARGET, draft, one_pass=True, plain_greedy=True)
    slow = RoundCost.of(TARGET, draft, one_pass=True, plain_greedy=False)
    assert fast.draft_step == pytest.approx(speculative.NGRAM_GREEDY_PER_ORDER * ngram.order
                                            / speculative.step_cost(TARGET))
    assert slow.draft_step == RoundCost.of(TARGET, reference, one_pass=True).draft_step > fast.draft_step


def test_prompt_lookup_proposes_what_followed_the_last_ngram():
    sampler = Sampler(build_processors(), False, None, torch.device("cpu"))
    look = PromptLookupDraft(max_ngram=3)
    assert look.propose([1, 5, 6, 7, 8, 5, 6], 2, sampler) == ([7, 8], None)  # "5 6" at 1
    assert look.propose([1, 5, 6, 7, 5, 6, 9, 5, 6], 4, sampler) == ([9, 5, 6], None)  # most recent
    assert look.propose([1, 4, 5, 6, 9, 4, 5, 6], 2, sampler) == ([9, 4], None)  # "4 5 6" first
    assert look.propose([1, 4, 5, 6], 3, sampler) == ([], None)  # no earlier occurrence
    assert PromptLookupDraft(max_ngram=3, min_ngram=2).propose([1, 5, 6, 5], 3, sampler) == ([], None)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, error, match", [
    ({"k": 0}, ConfigError, "k must be"),
    ({"k": -2}, ConfigError, "k must be"),
    ({"max_new_tokens": 0}, ConfigError, "max_new_tokens"),
    ({"draft": _transformer(1, vocab_size=V + 1, d_model=8)}, MismatchError, "vocabulary"),
    ({"draft": _ngram(vocab_size=V - 2)}, MismatchError, "vocabulary"),
    ({"draft": "prompt lookup"}, ConfigError, "ARModel"),
    ({"draft": object()}, ConfigError, "ARModel"),
    ({"prompt": [[SOS_ID, 4], [SOS_ID, 5]]}, ConfigError, "batch size 1"),
    ({"prompt": []}, ConfigError, "non-empty"),
    ({"temperature": -1.0}, ConfigError, "temperature"),
])
def test_bad_input_is_a_one_line_error(kw, error, match):
    args = {"draft": PromptLookupDraft(), "prompt": PROMPT} | kw
    draft, prompt = args.pop("draft"), args.pop("prompt")
    with pytest.raises(error, match=match) as info:
        speculative_generate(TARGET, draft, prompt, **args)
    assert "\n" not in str(info.value)


def test_bad_prompt_lookup_settings_and_target():
    with pytest.raises(ConfigError, match="min_ngram"):
        PromptLookupDraft(max_ngram=2, min_ngram=3)
    with pytest.raises(ConfigError, match="max_ngram"):
        PromptLookupDraft(max_ngram=0)
    with pytest.raises(ConfigError, match="target must be an ARModel"):
        speculative_generate(object(), TARGET)
