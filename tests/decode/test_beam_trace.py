"""beam_search's ``trace``: every step's candidates and their fate, enough to rebuild the n-best."""

import pytest
import torch

from arlm.decode.search import BeamStep, beam_search
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import SOS_ID
from toy_models import BigramTable


def _transformer() -> TransformerLM:
    torch.manual_seed(1)
    config = TransformerConfig(vocab_size=7, block_size=16, n_layer=1, n_head=2, d_model=16)
    return TransformerLM(config).eval()


def _path(steps: list[BeamStep], t: int, j: int) -> list[int]:
    """The tokens of candidate j of step t, followed back through the live slots to the prompt."""
    tokens = []
    while t >= 0:
        tokens.append(int(steps[t].tokens[0, j]))
        slot = int(steps[t].parent[0, j])
        t -= 1
        if t >= 0:
            j = int((steps[t].slot[0] == slot).nonzero()[0])
    return tokens[::-1]


@pytest.mark.parametrize("make", [lambda: BigramTable(6, seed=4), _transformer])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_trace_rebuilds_the_nbest(make, alpha):
    model = make()
    steps: list[BeamStep] = []
    K, L = 3, 5
    beams = beam_search(model, [[SOS_ID]], num_beams=K, max_new_tokens=L, length_penalty=alpha,
                        trace=steps.append)
    again = beam_search(model, [[SOS_ID]], num_beams=K, max_new_tokens=L, length_penalty=alpha)
    assert torch.equal(beams.tokens, again.tokens)  # tracing changes nothing
    assert [s.step for s in steps] == list(range(len(steps)))
    finished = []  # (normalised score, joint score, tokens) of every candidate that finished
    for s in steps:
        kept = s.slot[0][s.slot[0] >= 0]
        assert sorted(kept.tolist()) == list(range(len(kept)))  # live slots 0..k-1, each once
        assert not (s.finished[0] & (s.slot[0] >= 0)).any()  # finished candidates are never extended
        for j in s.finished[0].nonzero().squeeze(1).tolist():
            score = float(s.scores[0, j])
            finished.append((score / (s.step + 1) ** alpha, score, _path(steps, s.step, j)))
    finished.sort(key=lambda f: -f[0])
    best_norm, best_score, best_tokens = finished[0]
    n = int(beams.lengths[0, 0])
    assert best_tokens == beams.tokens[0, 0, :n].tolist()
    assert best_score == pytest.approx(float(beams.log_probs[0, 0]))
    assert best_norm == pytest.approx(float(beams.scores[0, 0]))


def test_trace_scores_add_log_probs():
    model = _transformer()
    steps: list[BeamStep] = []
    beam_search(model, [[SOS_ID]], num_beams=2, max_new_tokens=3, trace=steps.append)
    for s in steps:
        for j in torch.isfinite(s.scores[0]).nonzero().squeeze(1).tolist():
            tokens = _path(steps, s.step, j)
            seq = torch.tensor([[SOS_ID, *tokens]])
            assert float(s.scores[0, j]) == pytest.approx(float(model.score(seq)[0].sum().detach()), abs=1e-5)
