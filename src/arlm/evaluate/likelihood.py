"""Likelihood evaluation (F17): NLL, per-token NLL, perplexity, bits per token and per character.

For a sequence x of L scored predictions (every token after [SOS], [EOS] included)::

    NLL(x)  = -Σ_{t=1..L} log p(x_t | x_<t)
    WNLL(x) = NLL(x) / L
    ppl(x)  = exp(WNLL(x))

Over a test set {s_i} the chapter averages per-sentence perplexities, (1/N) Σ_i ppl(s_i); the usual
corpus perplexity (what KenLM, SRILM and papers report) pools the tokens, exp(Σ_i NLL(s_i) / Σ_i L_i).
Both are reported. OOV targets (those equal to [UNK]) are counted apart, so that perplexity is given
both including and excluding them, as KenLM's ``query`` does. Bits per character divide the total NLL
(in bits) by the characters of the text, counting one newline per sequence for its [EOS]: the unit that
compares models with different tokenizers. Bits per byte divide by the UTF-8 bytes of the same text
(one per newline likewise): equal to bits per character on ASCII text, and the unit of byte-level
models and of papers that compare tokenizers across scripts.

One function, :func:`evaluate_likelihood`, serves every :class:`~arlm.models.base.ARModel`: it only calls
``model.score`` on padded batches.

**Sequences longer than the model's context** (a Transformer with P learned positions reads at most P
tokens) are scored with a sliding window (strided evaluation): rows of P tokens at a stride of
S = ⌊P/2⌋, the first row scoring all of its targets and each later row only the targets after the
previous row's (the last row ends at the sequence's end). Every token of the sequence is scored exactly
once, and each one sees all of its sequence before it, or at least P - S earlier tokens of it (at most
P - 1), never tokens of another sequence. A model that reads everything (an RNN, an n-gram) is scored
whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from arlm.errors import DataError
from arlm.models.base import ARModel
from arlm.progress import progress
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, UNK_ID, split_sequences

LN2 = math.log(2.0)


@dataclass
class LikelihoodReport:
    """Totals of one evaluation; every derived number is a property."""

    nll: float  # Σ NLL over all scored predictions, in nats
    num_tokens: int  # scored predictions (targets), [EOS] included
    num_sequences: int
    num_oov: int  # targets that are [UNK]
    oov_nll: float  # the part of ``nll`` spent on [UNK] targets
    mean_sentence_ppl: float  # (1/N) Σ_i ppl(s_i), the chapter's average
    num_chars: int | None = None  # characters of the text, for bits per character
    num_bytes: int | None = None  # UTF-8 bytes of the text, for bits per byte
    num_zero: int = 0  # targets the model gave probability 0 (an MLE n-gram's or an ∞-gram's unseen)

    @property
    def nll_per_token(self) -> float:
        """WNLL over the corpus: Σ NLL / Σ L, in nats."""
        return self.nll / self.num_tokens

    @property
    def perplexity(self) -> float:
        """Corpus perplexity including OOVs: exp(Σ NLL / Σ L)."""
        return _exp(self.nll_per_token)

    @property
    def perplexity_excluding_oov(self) -> float:
        """Corpus perplexity over in-vocabulary targets only (KenLM's 'excluding OOVs')."""
        n = self.num_tokens - self.num_oov
        return _exp((self.nll - self.oov_nll) / n) if n else float("nan")

    @property
    def bits_per_token(self) -> float:
        return bits_per_unit(self.nll, self.num_tokens)

    @property
    def bits_per_char(self) -> float | None:
        return bits_per_unit(self.nll, self.num_chars) if self.num_chars else None

    @property
    def bits_per_byte(self) -> float | None:
        """Σ NLL / (ln 2 · UTF-8 bytes): the same text costs the same bytes under any tokenizer, so this
        compares word, char, byte and BPE models (and is bits per char on ASCII text)."""
        return bits_per_unit(self.nll, self.num_bytes) if self.num_bytes else None

    def to_dict(self) -> dict:
        """All totals and derived numbers, JSON-ready (inf stays a float; json writes Infinity)."""
        out = asdict(self)
        for name in ("nll_per_token", "perplexity", "perplexity_excluding_oov", "bits_per_token",
                     "bits_per_char", "bits_per_byte"):
            out[name] = getattr(self, name)
        return out


def bits_per_unit(nll_nats: float, units: int) -> float:
    """A total NLL in nats over ``units`` (tokens, characters, bytes) -> bits per unit: NLL / (ln 2 · n).

    The one conversion every report uses (evaluation, the trainer's validation, the experiments).
    """
    return nll_nats / LN2 / units


def _exp(x: float) -> float:
    return math.exp(x) if x < 709 else float("inf")


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int = PAD_ID) -> np.ndarray:
    """Right-pad 1-D id arrays with ``pad_id`` into one (B, T) int64 array."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    out = np.full((len(sequences), int(lengths.max())), pad_id, dtype=np.int64)  # (B, T)
    columns = np.arange(out.shape[1])
    out[columns[None, :] < lengths[:, None]] = np.concatenate(sequences)
    return out


def evaluate_likelihood(
    model: ARModel,
    sequences: np.ndarray | Sequence[np.ndarray],
    *,
    num_chars: int | None = None,
    num_bytes: int | None = None,
    sos_id: int = SOS_ID,
    eos_id: int = EOS_ID,
    unk_id: int | None = UNK_ID,
    batch_tokens: int = 65536,
    max_batch: int = 4096,
    context: int | None = None,
    show_progress: bool | None = None,
) -> LikelihoodReport:
    """Score every sequence with ``model.score`` and total the likelihood.

    ``sequences`` is a flat stream of ``[SOS] … [EOS]`` sequences or a list of such 1-D arrays.
    Sequences are sorted by length and packed into batches of about ``batch_tokens`` tokens
    (at most ``max_batch`` rows), so padding costs little; padding is never scored (rows are
    masked by their lengths, so a vocabulary without a [PAD] of its own, GPT-2's, scores right).
    ``sos_id``/``eos_id`` frame the stream and ``unk_id`` counts OOVs (None: the vocabulary has no
    [UNK]); the defaults are arlm's special ids. ``context`` is the most tokens the model reads in one
    row (a Transformer's ``block_size``; None: no limit): a longer sequence is scored with a sliding
    window (see the module docstring).
    """
    if isinstance(sequences, np.ndarray):
        seqs = split_sequences(sequences, sos_id, eos_id)
    else:
        seqs = list(sequences)
    if not seqs:
        raise DataError("nothing to evaluate: the split has no sequences; check the corpus and split")
    lengths = np.array([len(s) for s in seqs])
    if (lengths < 2).any():
        raise DataError("a sequence has no token to predict (it is only [SOS]); drop empty lines")

    if context is not None and context < 2:
        raise DataError(f"a context of {context} tokens has no token to predict; give at least 2")
    # pieces: (sequence, first token, end token, targets skipped at the row's start)
    pieces = [piece for i, n in enumerate(lengths) for piece in window_rows(i, int(n), context)]
    owner = np.array([p[0] for p in pieces])  # (R,) the sequence each row belongs to
    row_len = np.array([p[2] - p[1] for p in pieces])  # (R,) tokens per row
    skip = np.array([p[3] for p in pieces])  # (R,) leading targets another row scores

    nll_per_seq = np.zeros(len(seqs))  # nats
    oov_nll, num_oov, num_zero = 0.0, 0, 0
    total = int(lengths.sum() - len(seqs))
    with progress(show_progress) as bar, torch.inference_mode():
        task = bar.add_task("scoring", total=total)
        for rows, tokens, logp in scored_batches(model, seqs, pieces, batch_tokens, max_batch):
            targets = tokens[:, 1:]  # (B, T-1)
            columns = np.arange(targets.shape[1])[None, :]  # (1, T-1)
            scored = (columns < row_len[rows, None] - 1) & (columns >= skip[rows, None])  # (B, T-1)
            num_zero += int((scored & np.isneginf(logp)).sum())
            logp = np.where(scored, logp, 0.0)
            np.add.at(nll_per_seq, owner[rows], -logp.sum(axis=1))
            oov = scored & (targets == unk_id) if unk_id is not None else np.zeros_like(scored)
            num_oov += int(oov.sum())
            oov_nll -= float(logp[oov].sum())
            bar.advance(task, int(scored.sum()))

    num_targets = lengths - 1
    with np.errstate(over="ignore"):
        sentence_ppl = np.exp(nll_per_seq / num_targets)
    return LikelihoodReport(
        nll=float(nll_per_seq.sum()),
        num_tokens=int(num_targets.sum()),
        num_sequences=len(seqs),
        num_oov=num_oov,
        oov_nll=oov_nll,
        mean_sentence_ppl=float(sentence_ppl.mean()),
        num_chars=num_chars,
        num_bytes=num_bytes,
        num_zero=num_zero,
    )


def scored_batches(model: ARModel, seqs: Sequence[np.ndarray], pieces: Sequence[tuple[int, int, int, int]],
                   batch_tokens: int, max_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``model.score`` of every row of ``pieces`` (:func:`window_rows`' (sequence, first, end, skip)),
    the rows sorted by length and packed into batches of about ``batch_tokens`` tokens (at most
    ``max_batch`` rows) -> per batch (the rows' indices into ``pieces`` (B,), their tokens right-padded
    (B, T), log p of each next token (B, T-1) float64)."""
    row_len = np.array([p[2] - p[1] for p in pieces])  # (R,) tokens per row
    order = np.argsort(row_len, kind="stable")
    i = 0
    while i < len(order):
        # grow the batch while B × T_max stays within the token budget (row lengths ascend)
        j = i + 1
        while j < len(order) and j - i < max_batch and (j + 1 - i) * row_len[order[j]] <= batch_tokens:
            j += 1
        rows = order[i:j]
        tokens = pad_batch([np.asarray(seqs[pieces[r][0]][pieces[r][1]:pieces[r][2]], dtype=np.int64)
                            for r in rows])  # (B, T)
        yield rows, tokens, model.score(torch.from_numpy(tokens)).double().cpu().numpy()  # (B, T-1)
        i = j


def window_rows(index: int, length: int, context: int | None) -> list[tuple[int, int, int, int]]:
    """The rows that score a sequence of ``length`` tokens with at most ``context`` tokens per row:
    (index, start, end, skip) each, the row being tokens[start:end] and its first ``skip`` targets
    scored by an earlier row. One row if the sequence fits; otherwise a sliding window of stride
    ⌊context/2⌋ whose rows together score each of the length - 1 targets once."""
    if context is None or length <= context:
        return [(index, 0, length, 0)]
    stride = context // 2
    rows, done, start = [], 0, 0  # done: targets 1..done (token positions) already scored
    while done < length - 1:
        start = min(start, length - context)
        end = start + context
        rows.append((index, start, end, max(0, done - start)))  # row target k is token start + k + 1
        done = end - 1
        start += stride
    return rows
