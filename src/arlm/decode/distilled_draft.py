"""A draft distilled from its target: a table of the target's own greedy choices after short contexts.

Speculative decoding (:mod:`arlm.decode.speculative`) gains as much as the draft agrees with the target.
A counted n-gram model predicts the *text* it was counted on. A greedy round needs the *target's*
argmax, and the two are not the same thing: on ``benchmarks/speculative_bench.py``'s trained
4 × 128 char Transformer (1.56 nats/char held out), a Kneser-Ney 7-gram of the same training text
proposed the target's greedy token 70–75% of the time. That is too few for a 2× speed-up: a verifying
pass over 5 positions costs ~1.5 target steps.

**Distillation.** Read a text (the target's training split) through the target once, teacher-forced
(windows of the target's block size, a batch of windows a forward pass). At every position i the
target's greedy choice is y_i = argmax p(· | x_≤i). For every context length n = 1 … N − 1, count how
often each context c = x_{i−n+1..i} was followed by each choice, and keep the most frequent:

    d(c) = argmax_y #{i : x_{i−n+1..i} = c, y_i = y}          (ties to the lowest id)

The labels are the target's choices, not the text's next tokens. Where the text goes on in several
ways after a context, the target usually chooses one of them every time, so the table learns that one.
On the same target, a table of orders 1–9 distilled from the 3.7M training characters agreed with
plain greedy on 86–88% of its tokens, against 70–75% for the 7-gram.

**Rollouts.** Greedy decoding leaves the text it was trained on: it falls into loops of frequent words
that no passage of the text contains. So the target also continues ``rollouts`` passages of the text
greedily (``rollout_length`` tokens after a ``prompt_length``-token passage, at evenly spaced places,
all rows in one batched decode), and every generated token is counted as the choice after the tokens
before it: the states that decoding visits, with the target's own choices. On the trained target,
128 rollouts of 128 tokens raised the agreement on a test passage from 86% to 89%.

**Proposals.** The table proposes the label of the longest context it holds that ends the text so far,
then feeds that label back and proposes again (an unsmoothed backoff: no probabilities, only argmaxes).
The proposals are deterministic: q is a point mass, so sampling stays exact
(:func:`~arlm.decode.speculative.accept_or_resample`), but a sampled token matches less often than a
greedy one.

**Pruning (exact).** A context can be dropped when two things hold: its label equals the label of its
suffix one token shorter, and no longer context that extends it is kept. Lookup walks from the shortest
context to longer ones and stops at the first one missing. So a missing context always means "the
shorter context's label is the answer", and the pruned table proposes exactly what the full one would
(tested). On the table above: 5.8M contexts → 0.48M.

**Keys.** A context of n tokens c_{−n} … c_{−1} (c_{−1} the last) is one integer,
Σ_j c_{−j} · V^(j−1), so the key of n + 1 tokens is the key of n plus one term: a lookup walks the
lengths with one multiply-add each. Keys and labels are int64 arrays (saved with ``safetensors``) and
Python dicts in memory (a lookup costs ~0.1 µs). A context of n tokens needs V^(n+1) < 2^63, so the
longest context depends on the vocabulary: 9 tokens for up to 78 (Shakespeare's 74 chars), 3 for
GPT-2's 50,257.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from arlm.errors import ConfigError, FormatError, MismatchError
from arlm.io import atomic_write

FORMAT = "arlm-distilled-draft"
FORMAT_VERSION = 1
DEFAULT_ORDER = 10  # contexts of 1–9 tokens: the most an int64 key holds for ≤ 78 tokens (74 chars)
DEFAULT_BLOCK = 256  # the window for a target with no block size of its own (an RNN, an n-gram)
LOGIT_BUDGET = 2**24  # floats of (B, T, V) log-probs per forward pass (64 MiB): the batch of windows
ROLLOUTS, ROLLOUT_LENGTH, ROLLOUT_PROMPT = 128, 128, 32  # greedy continuations of the text (defaults)
ROLLOUT_BATCH = 64  # rows decoded together
# one proposal's cost in the schedule's unit (parameter reads, speculative.RoundCost): 1.4–2.1 µs for 9
# context lengths on the 2026-12-06 AVX-512 EPYC (dict lookups), ~7,000 reads at the rate the 7-gram's
# 20 µs proposals are charged (speculative.NGRAM_GREEDY_PER_ORDER); ~2× for caution
PROPOSAL_READS = 16_000


def longest_context(vocab_size: int) -> int:
    """The longest context whose key fits in int64 together with its label: the largest n with
    V^(n+1) ≤ 2^63 − 1."""
    return max(int(63 / math.log2(max(vocab_size, 2))) - 1, 0)


def target_choices(target, tokens: np.ndarray, block_size: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The target's greedy choice after every position of ``tokens`` (N,), teacher-forced in windows of
    ``block_size`` (default: the target's own, else DEFAULT_BLOCK): y_i = argmax p(· | window up to i)
    (N,). ``progress(done, total)`` is called after each batch of windows."""
    if block_size is None:
        block_size = getattr(getattr(target, "config", None), "block_size", None) or DEFAULT_BLOCK
    V, N = target.vocab_size, len(tokens)
    rows = max(1, min(64, LOGIT_BUDGET // (block_size * V)))  # windows per forward pass
    x = torch.as_tensor(np.ascontiguousarray(tokens, dtype=np.int64))  # (N,)
    out = np.empty(N, dtype=np.int64)
    starts = list(range(0, N, block_size))
    if hasattr(target, "eval"):
        target.eval()
    with torch.inference_mode():
        for b in range(0, len(starts), rows):
            group = starts[b : b + rows]
            full = [s for s in group if s + block_size <= N]
            if full:  # (B, T) windows of one length in one pass
                windows = torch.stack([x[s : s + block_size] for s in full])
                choices = target.log_probs(windows).argmax(-1).numpy()  # (B, T)
                for s, row in zip(full, choices, strict=True):
                    out[s : s + block_size] = row
            for s in group[len(full):]:  # the last, shorter window
                out[s:] = target.log_probs(x[None, s:]).argmax(-1)[0].numpy()
            if progress is not None:
                progress(min(N, group[-1] + block_size), N)
    return out


def rollout_streams(target, tokens: np.ndarray, rollouts: int, rollout_length: int, context: int,
                    progress: Callable[[int], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The target's greedy continuations of ``rollouts`` passages of ``tokens`` (at most every passage
    once), at evenly spaced places: prompts of ROLLOUT_PROMPT tokens (at most half the target's block,
    at least ``context``, so that no context counted reaches into the row before), then up to
    ``rollout_length`` new tokens.
    The rows x = prompt + new tokens side by side -> (each position's token x_{<end}, the token after
    it x_{>0}: its greedy choice, a mask of the positions whose next token the target chose: from the
    last prompt token on), each (R·(P+L−1),). ``progress(rows)`` hears the rows decoded so far."""
    from arlm.decode.fast import fast_decoder
    from arlm.decode.search import generate

    block = getattr(getattr(target, "config", None), "block_size", None)
    prompt_length = max(context, ROLLOUT_PROMPT if block is None else min(ROLLOUT_PROMPT, block // 2))
    length = rollout_length if block is None else min(rollout_length, block - prompt_length)
    rollouts = min(rollouts, len(tokens) - prompt_length + 1)  # at most every passage once
    if rollouts < 1 or length < 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    starts = np.linspace(0, len(tokens) - prompt_length, rollouts).astype(np.int64)  # (R,)
    prompts = np.stack([tokens[s : s + prompt_length] for s in starts])  # (R, P)
    decoder = fast_decoder(target.eval() if hasattr(target, "eval") else target)
    rows = []
    for b in range(0, rollouts, ROLLOUT_BATCH):
        new = generate(decoder, prompts[b : b + ROLLOUT_BATCH], temperature=0, max_new_tokens=length,
                       eos_id=None).tokens.numpy()  # (b, L)
        rows.append(np.concatenate([prompts[b : b + ROLLOUT_BATCH], new], axis=1))  # (b, P+L)
        if progress is not None:
            progress(min(b + ROLLOUT_BATCH, rollouts))
    x = np.concatenate(rows)  # (R, P+L)
    counted = np.zeros((rollouts, prompt_length + length - 1), dtype=bool)
    counted[:, prompt_length - 1 :] = True  # from the last prompt token: its choice is the first new one
    return x[:, :-1].reshape(-1), x[:, 1:].reshape(-1), counted.reshape(-1)


def distill_tables(tokens: np.ndarray, choices: np.ndarray, vocab_size: int, order: int,
                   counted: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Context keys and their most frequent choice, for context lengths 1 … order − 1, pruned (module
    docstring) -> (keys, labels): one sorted int64 array of each per length. ``counted``: a mask of the
    positions whose choice counts (default: all)."""
    V, N = vocab_size, len(tokens)
    counted = np.ones(N, dtype=bool) if counted is None else np.asarray(counted, dtype=bool)
    keys_by, labels_by = [], []
    key = np.zeros(N, dtype=np.int64)  # the key of the n tokens ending at each position
    for n in range(1, order):
        if n > N:  # a text shorter than the context: no context of this length (nor longer)
            keys_by.append(np.zeros(0, dtype=np.int64))
            labels_by.append(np.zeros(0, dtype=np.int64))
            continue
        earlier = np.zeros(N, dtype=np.int64)
        earlier[n - 1 :] = tokens[: N - n + 1]  # x_{i−n+1}: the token n − 1 before position i
        key += earlier * V ** (n - 1)
        use = counted[n - 1 :]
        pairs, counts = np.unique((key[n - 1 :] * V + choices[n - 1 :])[use], return_counts=True)
        context, label = pairs // V, pairs % V
        order_ = np.lexsort((-counts, context))  # by context, the most frequent choice first (stable:
        context, label = context[order_], label[order_]  # ties keep np.unique's order, the lowest id)
        first = np.ones(len(context), dtype=bool)
        first[1:] = context[1:] != context[:-1]
        keys_by.append(context[first])
        labels_by.append(label[first])
    kept_parents = None  # the length-n contexts that a kept length-(n+1) context extends
    for n in range(order - 1, 0, -1):  # longest first: a context is kept if an extension of it is
        keys, labels = keys_by[n - 1], labels_by[n - 1]
        keep = np.ones(len(keys), dtype=bool)
        if n > 1:  # the shortest contexts are all kept: they start every walk
            suffix_keys, suffix_labels = keys_by[n - 2], labels_by[n - 2]
            suffix = keys % V ** (n - 1)  # the last n − 1 tokens
            keep = suffix_labels[np.searchsorted(suffix_keys, suffix)] != labels
            if kept_parents is not None:
                keep |= np.isin(keys, kept_parents)
        keys_by[n - 1], labels_by[n - 1] = keys[keep], labels[keep]
        kept_parents = keys[keep] % V ** (n - 1) if n > 1 else None
    return keys_by, labels_by


class DistilledDraft:
    """A speculative-decoding draft that proposes its target's own greedy choices, learned from a text
    read through the target (module docstring).

    >>> draft = DistilledDraft.distill(target, train_tokens)        # one teacher-forced read
    >>> speculative_generate(target, draft, prompt, temperature=0)  # plain greedy's tokens, faster
    >>> draft.save("draft.safetensors"); DistilledDraft.load("draft.safetensors")
    """

    proposal_cost = PROPOSAL_READS  # what RoundCost charges a proposal, in parameter reads

    def __init__(self, keys: Sequence[np.ndarray], labels: Sequence[np.ndarray], vocab_size: int,
                 source: dict[str, str] | None = None) -> None:
        """One sorted key array and its label array per context length 1, 2, … (what
        :func:`distill_tables` returns); ``source``: what it was distilled from (saved with it: the
        target, the text, the tokenizer's digest), strings."""
        if len(keys) != len(labels) or not keys:
            raise ConfigError("a distilled draft needs one key array and one label array per context "
                              "length (at least one); build it with DistilledDraft.distill")
        if len(keys) > longest_context(vocab_size):
            raise ConfigError(f"contexts of {len(keys)} tokens do not fit a key for {vocab_size:,} tokens "
                              f"(at most {longest_context(vocab_size)}); distill a lower order")
        self.vocab_size = vocab_size
        self.keys = [np.asarray(k, dtype=np.int64) for k in keys]
        self.labels = [np.asarray(v, dtype=np.int64) for v in labels]
        for k, v in zip(self.keys, self.labels, strict=True):
            if k.shape != v.shape or k.ndim != 1:
                raise ConfigError("each context length needs keys and labels of the same 1-D shape")
            if len(v) and (v.min() < 0 or v.max() >= vocab_size):
                raise ConfigError(f"a label lies outside the vocabulary of {vocab_size:,} tokens")
        self.tables = [dict(zip(k.tolist(), v.tolist(), strict=True))  # context key -> label, per length
                       for k, v in zip(self.keys, self.labels, strict=True)]
        self.source = dict(source or {})
        self.proposals = 0

    @property
    def order(self) -> int:
        """N: contexts of up to N − 1 tokens."""
        return len(self.tables) + 1

    @property
    def size(self) -> int:
        """The number of contexts kept, over all lengths."""
        return sum(len(t) for t in self.tables)

    @property
    def forwards(self) -> int:
        """Proposals made (what the schedule charges :attr:`proposal_cost` for)."""
        return self.proposals

    @classmethod
    def distill(cls, target, tokens, order: int = DEFAULT_ORDER, block_size: int | None = None,
                rollouts: int = ROLLOUTS, rollout_length: int = ROLLOUT_LENGTH,
                progress: Callable[[int, int], None] | None = None) -> DistilledDraft:
        """Read ``tokens`` (a 1-D sequence of ids on the target's vocabulary: its training text) through
        ``target`` (any ARModel; a Transformer reads windows of its block size), let it continue
        ``rollouts`` passages of it greedily for ``rollout_length`` tokens (0: none), and keep, for
        contexts of 1 … ``order`` − 1 tokens, the target's most frequent greedy choice after them."""
        V = target.vocab_size
        if isinstance(order, bool) or not isinstance(order, int) or order < 2:
            raise ConfigError(f"order must be an integer ≥ 2 (contexts of order − 1 tokens), got {order!r}")
        most = longest_context(V)
        if order - 1 > most:
            raise ConfigError(f"order {order} needs contexts of {order - 1} tokens, but with {V:,} tokens "
                              f"a key holds at most {most}; use order ≤ {most + 1}")
        ids = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int64).ravel()
        if len(ids) < 2:
            raise ConfigError(f"distilling needs a text of at least 2 tokens, got {len(ids)}")
        if ids.min() < 0 or ids.max() >= V:
            raise MismatchError(f"the text holds token ids outside the target's vocabulary of {V:,}; "
                                "encode it with the target's tokenizer")
        for name, value in (("rollouts", rollouts), ("rollout_length", rollout_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer ≥ 0, got {value!r}")
        N = len(ids)  # progress: a text token and a rollout's row counted alike, by the time each takes
        work = N + rollouts * rollout_length * 4  # (a row's token: ~4× a text token's teacher-forced read)

        def report(done: int, _total: int | None = None) -> None:
            if progress is not None:
                progress(done, work)

        choices = target_choices(target, ids, block_size, report)
        stream, chosen, counted = rollout_streams(target, ids, rollouts, rollout_length, order - 1,
                                                  lambda rows: report(N + rows * rollout_length * 4))
        report(work)
        counted = np.concatenate([np.ones(len(ids), dtype=bool), counted])  # the text: every position
        ids, choices = np.concatenate([ids, stream]), np.concatenate([choices, chosen])
        return cls(*distill_tables(ids, choices, V, order, counted), vocab_size=V)

    def propose(self, context: Sequence[int], k: int, sampler=None) -> tuple[list[int], None]:
        """Up to k tokens: each the label of the longest kept context ending the text so far, fed back
        for the next (fewer when no context of one token is known). Deterministic: q is None."""
        V, tables, n_max = self.vocab_size, self.tables, len(self.tables)
        window = list(context[-n_max:])
        out: list[int] = []
        for _ in range(k):
            key, scale, label = 0, 1, None
            for n in range(1, min(n_max, len(window)) + 1):  # c_{-1}, then c_{-2} c_{-1}, …
                key += window[-n] * scale
                scale *= V
                found = tables[n - 1].get(key)
                if found is None:  # no longer context was kept either
                    break
                label = found
            if label is None:
                break
            out.append(label)
            window.append(label)
            if len(window) > n_max:
                del window[0]
        self.proposals += len(out)
        return out, None

    # ----- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the table to one ``.safetensors`` file (keys and labels per context length, the
        vocabulary size in its metadata), atomically."""
        from safetensors.numpy import save

        path = Path(path)
        arrays = {f"{name}_{n}": a for n, (k, v) in enumerate(zip(self.keys, self.labels, strict=True), 1)
                  for name, a in (("keys", k), ("labels", v))}
        meta = {"format_version": FORMAT_VERSION, "vocab_size": self.vocab_size, "order": self.order,
                "source": {k: str(v) for k, v in self.source.items()}}
        # one metadata entry, its JSON's keys sorted: safetensors writes several entries in no fixed
        # order, and the same draft should be the same bytes
        with atomic_write(path, "wb", encoding=None) as f:
            f.write(save(arrays, metadata={FORMAT: json.dumps(meta, sort_keys=True)}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DistilledDraft:
        """Read a file written by :meth:`save`."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                header = (f.metadata() or {}).get(FORMAT)
                if header is None:
                    raise FormatError(f"{path} is not a distilled draft (no '{FORMAT}' metadata); write one "
                                      "with DistilledDraft.save or `arlm distill-draft`")
                meta = json.loads(header)
                order, vocab_size = int(meta["order"]), int(meta["vocab_size"])
                keys = [f.get_tensor(f"keys_{n}") for n in range(1, order)]
                labels = [f.get_tensor(f"labels_{n}") for n in range(1, order)]
        except FileNotFoundError as e:
            raise FormatError(f"{path} does not exist; distill a draft first (`arlm distill-draft`)") from e
        except (SafetensorError, KeyError, TypeError, ValueError, OSError) as e:
            raise FormatError(f"{path} is not a readable distilled draft ({e}); distill it again") from e
        return cls(keys, labels, vocab_size, meta.get("source"))
