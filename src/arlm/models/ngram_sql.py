"""Modified Kneser–Ney as relational queries: the SQL that counts and estimates, for any engine.

:mod:`arlm.models.ngram` counts and smooths in memory with numpy. Here the same steps are queries
over tables, so an engine that spills to disk (DuckDB) or spreads over machines (Spark) can run them
on corpora that do not fit in memory. Every query is plain SQL that DuckDB and Spark SQL both read
(``CAST``, ``CASE``, ``GROUP BY``, joins, ``ROW_NUMBER() OVER``); the engines only differ in how a
result is kept (:mod:`arlm.models.ngram_engines`).

**Input.** ``tokens``: one row per position t of the ``[SOS] … [EOS]`` stream, columns
``w1 … wN`` = x_{t-N+1} … x_t, with -1 where that token lies before the sentence's [SOS] (an n-gram
never crosses a sentence start). ``vocab``: one row per token id ``v1`` = 0 … V-1.

**Tables**, per order n (n-gram words in columns ``v1 … vn``):

1. ``padded``: ``GROUP BY w1 … wN`` of ``tokens``: every N-gram, short ones padded with -1 on the left.
2. ``count{n}`` (c): ``padded`` summed over its last n columns, where all n are tokens.
3. ``adj{n}`` (a): lmplz's adjusted counts: c for order N and for n-grams that start with ``<s>``,
   else the number of distinct left extensions = the rows of ``count{n+1}`` with this suffix;
   order 1 is dense over ``vocab`` and a(<s>) = 0.
4. count-of-counts ``t_k`` (k = 0 … 4) per order -> discounts D1, D2, D3+ (computed outside SQL).
5. ``ctx{n}``: per context h (the first n-1 words): ``denom`` = Σ_w a(hw) and
   γ(h) = (D1 N1(h•) + D2 N2(h•) + D3 N3+(h•)) / denom from the integer counts N_k.
6. ``adjctx{n}``: ``adj{n}`` joined with its context's denom and γ; ``prob{n}``:
   p(w | h) = (a - D(a)) / denom + γ(h) p(w | h'), joining ``prob{n-1}`` on the suffix
   h'w; p(w) = (a - D(a)) / denom + γ(ε) · (1/|V|) for unigrams; [PAD] and <s> get 0.
7. ``final{n}``: ``id`` (rank of the words, i.e. the order of :mod:`arlm.models.ngram_counts`'
   sorted keys), ``key`` = prefix id · V + w_n (joining ``final{n-1}``), ``p``, and ``gamma`` of the
   n-gram as a context (``ctx{n+1}``; NULL where it is none).

The arithmetic is written in numpy's order in :func:`arlm.models.ngram.estimate_kneser_ney` and every
sum is of integers, so the float64 values are equal bit for bit; the log10 is taken outside SQL (by
numpy), since engines' log10 may differ in the last bit.
"""

from __future__ import annotations

from arlm.streams import PAD_ID, SOS_ID


def _cols(prefix: str, lo: int, hi: int, alias: str = "") -> list[str]:
    """[alias.prefix{lo}, …, alias.prefix{hi}] (empty when lo > hi)."""
    dot = f"{alias}." if alias else ""
    return [f"{dot}{prefix}{i}" for i in range(lo, hi + 1)]


def _join_on(left: str, lcols: list[str], right: str, rcols: list[str]) -> str:
    return " AND ".join(f"{left}.{a} = {right}.{b}" for a, b in zip(lcols, rcols, strict=True))


def double(x: float) -> str:
    """A float64 literal that every engine reads as exactly ``x`` (the shortest round-trip text)."""
    return f"CAST('{x!r}' AS DOUBLE)"


def padded(order: int) -> str:
    ws = ", ".join(_cols("w", 1, order))
    return f"SELECT {ws}, COUNT(*) AS c FROM tokens GROUP BY {ws}"


def count(n: int, order: int) -> str:
    """c(v1..vn): the sum of ``padded`` over its last n columns, all of them tokens."""
    src = _cols("w", order - n + 1, order)
    sel = ", ".join(f"{w} AS v{i}" for i, w in enumerate(src, start=1))
    return (f"SELECT {sel}, CAST(SUM(c) AS BIGINT) AS c FROM padded WHERE {src[0]} >= 0 "
            f"GROUP BY {', '.join(src)}")


def num_rows(table: str) -> str:
    return f"SELECT COUNT(*) AS n FROM {table}"


def adjusted(n: int, order: int) -> str:
    """a(v1..vn), lmplz's adjusted counts (module docstring, step 3)."""
    vs = _cols("v", 1, n)
    if n == order:
        raw = "g.c"
        ext = None
    else:
        raw = f"CASE WHEN g.v1 = {SOS_ID} THEN g.c ELSE COALESCE(e.ext, 0) END"
        suffix = _cols("v", 2, n + 1)
        ext = (f"(SELECT {', '.join(f'{s} AS v{i}' for i, s in enumerate(suffix, start=1))}, "
               f"COUNT(*) AS ext FROM count{n + 1} GROUP BY {', '.join(suffix)}) e")
    if n == 1:  # dense over the vocabulary; <s> is never predicted
        body = "vocab u LEFT JOIN count1 g ON u.v1 = g.v1"
        if ext:
            body += f" LEFT JOIN {ext} ON u.v1 = e.v1"
        return (f"SELECT u.v1, CASE WHEN u.v1 = {SOS_ID} THEN 0 "
                f"ELSE COALESCE({raw}, 0) END AS a FROM {body}")
    body = f"count{n} g" + (f" LEFT JOIN {ext} ON {_join_on('g', vs, 'e', vs)}" if ext else "")
    return f"SELECT {', '.join(_cols('v', 1, n, 'g'))}, {raw} AS a FROM {body}"


def count_of_counts(n: int) -> str:
    """t_k = |{n-grams with a = k}| for k = 0..4 (k = 5 stands for ≥ 5)."""
    return f"SELECT CASE WHEN a >= 5 THEN 5 ELSE a END AS k, COUNT(*) AS t FROM adj{n} GROUP BY 1"


def _discount(a: str, d: tuple[float, float, float]) -> str:
    return (f"CASE WHEN {a} >= 3 THEN {double(d[2])} WHEN {a} = 2 THEN {double(d[1])} "
            f"WHEN {a} = 1 THEN {double(d[0])} ELSE {double(0.0)} END")


def contexts(n: int, d: tuple[float, float, float]) -> str:
    """Per context of order-n n-grams: denom = Σ a and γ = (D1 N1 + D2 N2 + D3 N3+) / denom."""
    hs = _cols("v", 1, n - 1)
    keys = f"{', '.join(hs)}, " if hs else ""
    group = f" GROUP BY {', '.join(hs)}" if hs else ""
    inner = (f"SELECT {keys}CAST(SUM(a) AS DOUBLE) AS denom, "
             f"CAST(SUM(CASE WHEN a = 1 THEN 1 ELSE 0 END) AS DOUBLE) AS n1, "
             f"CAST(SUM(CASE WHEN a = 2 THEN 1 ELSE 0 END) AS DOUBLE) AS n2, "
             f"CAST(SUM(CASE WHEN a >= 3 THEN 1 ELSE 0 END) AS DOUBLE) AS n3 FROM adj{n}{group}")
    gamma = f"({double(d[0])} * n1 + {double(d[1])} * n2 + {double(d[2])} * n3) / denom"
    return f"SELECT {keys}denom, {gamma} AS gamma FROM ({inner}) s"


def probabilities(n: int, d: tuple[float, float, float], num_predicted: int) -> str:
    """p(w | h) interpolated with the order below (module docstring, step 6)."""
    p_hat = f"(CAST(g.a AS DOUBLE) - {_discount('g.a', d)}) / x.denom"
    if n == 1:
        below = double(1.0 / num_predicted)
        return (f"SELECT g.v1, CASE WHEN g.v1 = {PAD_ID} OR g.v1 = {SOS_ID} THEN {double(0.0)} "
                f"ELSE {p_hat} + x.gamma * {below} END AS p FROM adj1 g CROSS JOIN ctx1 x")
    vs, hs = _cols("v", 1, n, "g"), _cols("v", 1, n - 1)
    p_hat = p_hat.replace("x.denom", "g.denom")
    return (f"SELECT {', '.join(vs)}, {p_hat} + g.gamma * lo.p AS p FROM adjctx{n} g "
            f"JOIN prob{n - 1} lo ON {_join_on('g', _cols('v', 2, n), 'lo', hs)}")


def with_context(n: int) -> str:
    """``adj{n}`` with each n-gram's context's denom and γ (kept as a table of its own: one join per
    query, as a three-way join made DuckDB pick a slow plan on 10M tokens of Python source)."""
    hs = _cols("v", 1, n - 1)
    return (f"SELECT {', '.join(_cols('v', 1, n, 'g'))}, g.a, x.denom, x.gamma FROM adj{n} g "
            f"JOIN ctx{n} x ON {_join_on('g', hs, 'x', hs)}")


def final(n: int, order: int, vocab_size: int) -> str:
    """id, key, p and γ-as-context of every order-n n-gram (module docstring, step 7)."""
    vs = _cols("v", 1, n)
    if n < order:
        gamma = "x.gamma"
        ctx = f" LEFT JOIN ctx{n + 1} x ON {_join_on('g', vs, 'x', vs)}"
    else:
        gamma, ctx = "CAST(NULL AS DOUBLE)", ""
    if n == 1:
        return (f"SELECT g.v1, CAST(g.v1 AS BIGINT) AS id, CAST(g.v1 AS BIGINT) AS key, "
                f"g.p, {gamma} AS gamma FROM prob1 g{ctx}")
    hs = _cols("v", 1, n - 1)
    rank = f"CAST(ROW_NUMBER() OVER (ORDER BY {', '.join(vs)}) AS BIGINT) - 1"
    ranked = f"SELECT {', '.join(vs)}, {rank} AS id, p FROM prob{n}"
    return (f"SELECT {', '.join(_cols('v', 1, n, 'g'))}, g.id, "
            f"pr.id * {int(vocab_size)} + g.v{n} AS key, g.p, {gamma} AS gamma "
            f"FROM ({ranked}) g JOIN final{n - 1} pr ON {_join_on('g', hs, 'pr', hs)}{ctx}")


def table_rows(n: int) -> str:
    """What a model table needs of ``final{n}``, in key order."""
    return f"SELECT id, key, p, gamma FROM final{n} ORDER BY id"
