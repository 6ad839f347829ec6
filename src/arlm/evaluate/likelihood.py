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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    show_progress: bool | None = None,
) -> LikelihoodReport:
    """Score every sequence with ``model.score`` and total the likelihood.

    ``sequences`` is a flat stream of ``[SOS] … [EOS]`` sequences or a list of such 1-D arrays.
    Sequences are sorted by length and packed into batches of about ``batch_tokens`` tokens
    (at most ``max_batch`` rows), so padding costs little; padding is never scored (rows are
    masked by their lengths, so a vocabulary without a [PAD] of its own, GPT-2's, scores right).
    ``sos_id``/``eos_id`` frame the stream and ``unk_id`` counts OOVs (None: the vocabulary has no
    [UNK]); the defaults are arlm's special ids.
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

    nll_per_seq = np.zeros(len(seqs))  # nats
    oov_nll, num_oov = 0.0, 0
    order = np.argsort(lengths, kind="stable")
    total = int(lengths.sum() - len(seqs))
    with progress(show_progress) as bar, torch.inference_mode():
        task = bar.add_task("scoring", total=total)
        i = 0
        while i < len(order):
            # grow the batch while B × T_max stays within the token budget (lengths ascend)
            j = i + 1
            while j < len(order) and j - i < max_batch and (j + 1 - i) * lengths[order[j]] <= batch_tokens:
                j += 1
            rows = order[i:j]
            tokens = pad_batch([np.asarray(seqs[r], dtype=np.int64) for r in rows])  # (B, T)
            logp = model.score(torch.from_numpy(tokens)).double().cpu().numpy()  # (B, T-1)
            targets = tokens[:, 1:]  # (B, T-1)
            scored = np.arange(targets.shape[1])[None, :] < lengths[rows, None] - 1  # (B, T-1)
            logp = np.where(scored, logp, 0.0)
            nll_per_seq[rows] = -logp.sum(axis=1)
            oov = scored & (targets == unk_id) if unk_id is not None else np.zeros_like(scored)
            num_oov += int(oov.sum())
            oov_nll -= float(logp[oov].sum())
            bar.advance(task, int(scored.sum()))
            i = j

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
    )
