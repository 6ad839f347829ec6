"""On a CUDA device: the static step captured as a CUDA graph gives the model's own log-probs and
tokens, a compiled bf16 training step equals the eager one, a non-finite training step is skipped on
the GPU and reported at the next read, and int8 quantization is refused.

These run only where CUDA exists (CI has none: they are collected and skipped there). They are run
with pytest on a lent GPU in the same device session as ``benchmarks/gpu_speed.py``; the issue note
quotes that log."""

import pytest
import torch

from arlm.decode.fast import FastDecoder
from arlm.decode.search import beam_search, generate
from arlm.decode.speculative import PromptLookupDraft, speculative_generate
from arlm.models.gpt2 import GPT2LM
from arlm.models.transformer import TransformerConfig, TransformerLM
from train_helpers import only_the_poisoned_step_was_skipped, poison_one_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

V = 20
PROMPTS = [[1, 5, 6, 7, 5, 6], [1, 9, 4, 4, 3, 8]]


def _model(cls=TransformerLM, seed=0):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=V, block_size=48, n_layer=2, n_head=2, d_model=32)
    model = cls(cfg).eval()
    with torch.no_grad():  # large weights: peaked distributions, varied greedy text
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model.cuda()


@pytest.mark.parametrize("cls", [TransformerLM, GPT2LM])
def test_the_cuda_graph_step_gives_the_models_log_probs_and_tokens(cls):
    model = _model(cls)
    graphs = FastDecoder(model, cuda_graphs=True)
    prompts = torch.tensor(PROMPTS, device="cuda")
    ref_state, state = model.start(2), graphs.start(2)
    ref, _ = model.step(prompts, ref_state)
    out, _ = graphs.step(prompts, state)
    tok = ref.argmax(-1, keepdim=True)
    for _ in range(12):  # one-token steps: graph replays
        ref, _ = model.step(tok, ref_state)
        out, _ = graphs.step(tok, state)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)
        tok = ref.argmax(-1, keepdim=True)
    assert graphs._steps[2].graph is not None  # the step really was captured
    for settings in (dict(temperature=0), dict(temperature=1.0, seed=3, num_samples=3)):
        a = generate(model, prompts, max_new_tokens=30, eos_id=None, **settings)
        b = generate(graphs, prompts, max_new_tokens=30, eos_id=None, **settings)
        assert torch.equal(a.tokens, b.tokens)


def test_beam_search_and_speculative_decoding_through_the_graph():
    model = _model(seed=1)
    graphs = FastDecoder(model, cuda_graphs=True)
    prompts = torch.tensor(PROMPTS, device="cuda")
    a = beam_search(model, prompts, num_beams=3, max_new_tokens=12)
    b = beam_search(graphs, prompts, num_beams=3, max_new_tokens=12)  # select() moves foreign caches in
    assert torch.equal(a.tokens, b.tokens)
    plain = generate(model, prompts[:1], temperature=0, max_new_tokens=30, eos_id=None).rows()[0]
    spec = speculative_generate(graphs, PromptLookupDraft(), PROMPTS[:1], temperature=0, max_new_tokens=30,
                                k=3, eos_id=None, adaptive=False)  # k every round: the verifying path
    assert spec.tokens.tolist() == plain


def test_a_compiled_bf16_training_step_equals_the_eager_one():
    import numpy as np

    from arlm.train import TrainConfig, Trainer

    def trainer(compile: bool) -> Trainer:
        torch.manual_seed(0)
        cfg = TransformerConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, d_model=32)
        model = TransformerLM(cfg)
        stream = np.random.default_rng(0).integers(3, 16, size=4000)
        config = TrainConfig(batch_tokens=4 * 16, micro_batch_size=4, block_size=16, max_steps=3,
                             warmup_steps=1, eval_interval=0, show_progress=False, device="cuda",
                             dtype="bf16", compile=compile)
        return Trainer(model, config, stream)

    eager, compiled = trainer(False), trainer(True)
    initial = [p.detach().clone() for p in eager.model.parameters()]
    for _ in range(2):
        a, b = eager.train_step(), compiled.train_step()
        # bf16 matmuls: the fused kernels round differently from the eager ones
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=2e-2)
    for p, q in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=2e-2, atol=2e-3)
    # the updates themselves (each ~lr, as large as the tolerance above) point the same way: a compiled
    # step that did nothing or moved elsewhere fails here (the CPU analogue gives a cosine of 0.9999)
    def update(trainer: Trainer) -> torch.Tensor:
        moved = zip(trainer.model.parameters(), initial, strict=True)
        return torch.cat([(p - p0).flatten() for p, p0 in moved])

    eager_update, compiled_update = update(eager), update(compiled)
    assert eager_update.abs().max() > 0
    assert torch.nn.functional.cosine_similarity(eager_update, compiled_update, dim=0) > 0.99


def test_a_non_finite_step_is_skipped_on_the_gpu_and_reported_at_the_next_read():
    import numpy as np

    from arlm.train import TrainConfig, Trainer, TrainingError

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, d_model=16))
    stream = np.random.default_rng(0).integers(3, 16, size=4000)
    config = TrainConfig(batch_tokens=4 * 16, micro_batch_size=4, block_size=16, max_steps=10, warmup_steps=1,
                         log_interval=2, eval_interval=0, show_progress=False, device="cuda")
    trainer = Trainer(model.cuda(), config, stream)
    assert trainer.checks_on_device  # CUDA + fused AdamW: no step waits for the GPU
    weights = poison_one_step(trainer, 3)
    with pytest.raises(TrainingError, match="at step 3"):
        trainer.train()
    assert trainer.step == 4
    assert only_the_poisoned_step_was_skipped(weights, model, 3)


def test_int8_quantization_is_refused_on_cuda():
    from arlm.errors import ConfigError
    from arlm.models.quantize import quantize_int8

    with pytest.raises(ConfigError, match="CPU"):
        quantize_int8(_model())
