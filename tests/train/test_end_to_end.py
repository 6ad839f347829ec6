"""Corpus -> tokenizer -> EncodedSplit -> Trainer -> checkpoint folder -> load_family_model -> evaluation."""

import math

import pytest
import torch

from arlm.data.cache import encode_corpus
from arlm.data.corpora import Corpus, Document
from arlm.data.tokenizers import train_tokenizer
from arlm.evaluate.likelihood import evaluate_likelihood
from arlm.models.registry import load_family_model
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_train_on_an_encoded_corpus_and_load_the_best_model(tmp_path):
    lines = [f"the cat {i % 7} sat on the mat" for i in range(60)]
    corpus = Corpus("toy", [Document("d", "\n".join(lines))], "toy corpus")
    tok = train_tokenizer("char", corpus.lines("all"))
    data = encode_corpus(corpus, "all", tok, use_cache=False)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                                            d_model=32))
    cfg = TrainConfig(batch_tokens=256, micro_batch_size=4, block_size=32, lr=1e-2, warmup_steps=5,
                      max_steps=40, eval_interval=20, device="cpu", out_dir=str(tmp_path),
                      show_progress=False)
    trainer = Trainer(model, cfg, data, data)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["val_bits_per_char"] < before["val_bits_per_char"] - 1.0
    best = load_family_model(tmp_path / "best")
    report = evaluate_likelihood(best, data.tokens, num_chars=data.num_chars, show_progress=False)
    assert math.isfinite(report.perplexity) and report.bits_per_char < before["val_bits_per_char"]
