"""What the two orders experiments share: train a model in an order at a fixed step budget, cut a
split to its first sequences, and time nothing (the budget is steps, so the numbers repeat)."""

from __future__ import annotations

import numpy as np

from arlm.data.cache import EncodedSplit
from arlm.streams import sequence_spans


def train_in_order(command: str, corpus: str, order: str, overrides: list[str], seed: int, threads: int):
    """Train ``arlm train COMMAND`` in ``order`` without writing anything -> (model in eval mode,
    tokenizer, order spec). The budget is ``max_steps`` in ``overrides`` (equal for every order)."""
    model, tokenizer, spec, _ = train_with_curve(command, corpus, order, overrides, seed, threads, "")
    return model, tokenizer, spec


def train_with_curve(command: str, corpus: str, order: str, overrides: list[str], seed: int, threads: int,
                     val_split: str = "val"):
    """:func:`train_in_order` with a validation split -> (model, tokenizer, order spec, learning curve:
    ``[[step, validation loss in nats per token, in the model's own order], …]`` at every evaluation)."""
    from arlm.usecases.train import TrainRequest, train_neural

    request = TrainRequest(command, corpus=corpus, val_split=val_split, preset="tiny",
                           overrides=[*overrides, f"seed={seed}", "show_progress=false"], out_dir=None,
                           threads=threads, order=order)
    result = train_neural(request, log=lambda *_: None)
    curve = [[x["step"], x["val_loss"]] for x in result.summary.history if x.get("val_loss") is not None]
    return result.trainer.model.eval(), result.trainer.tokenizer, result.order, curve


def first_sequences(split: EncodedSplit, count: int | None) -> EncodedSplit:
    """The split's first ``count`` sequences (all when None); characters counted as a char tokenizer
    does: one per content token and one per [EOS] (the newline)."""
    starts, lengths = sequence_spans(split.tokens)
    if count is None or count >= len(starts):
        return split
    end = int(starts[count])
    tokens = np.asarray(split.tokens[:end])
    return EncodedSplit(tokens, int((lengths[:count] - 1).sum()), count)
