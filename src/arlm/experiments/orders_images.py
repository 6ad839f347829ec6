"""orders-images: pixel orders on 8×8 digits, one model per order against one shared model for all
orders, their mixtures, infilling likelihood and samples (F4, F24).

**Claim.** An image is a sequence once a pixel order σ is chosen, and the chain rule holds in every
order, so any autoregressive model is an image model. Each order's model is a distribution p_σ(x), so
their uniform mixture

    p_mix(x) = (1/M) Σ_σ p_σ(x),      -log p_mix(x) ≤ mean_σ -log p_σ(x)  (Jensen)

is one too: the order ensemble of LMConv (Jain et al. 2020: 8 orders 2.887 against 1 order 2.909
bits/dim on CIFAR-10), which mixes the orders of *one* model with shared weights. It beats the average
order by construction; whether it beats the *best* order is measured.

**Arms** (every one trained with 3 seeds, early-stopped on validation under one step budget):

* the Transformer and the LSTM trained separately in each of five pixel orders (raster, snake, Z-order,
  Hilbert, a fixed random order), and the mixture of each family's five models;
* σ-GPT with shared weights over the same five orders (``train_orders``: each training row read in one of
  them; its second position table says which pixel comes next), scored per order and as the mixture
  (:meth:`~arlm.models.sigma_gpt.SigmaGPT.log_prob_mixture`);
* σ-GPT trained on a fresh random order per image, scored in random orders;
* infilling likelihood: bits per hidden pixel of a hidden half given the visible half. σ-GPT reads the
  visible pixels first and scores the hidden ones given all of them, log p(x_H | x_V); a raster model
  can only score each hidden pixel given the pixels before it in raster order.

**Protocol.** Training runs in chunks of ``eval_interval`` steps up to ``max_steps`` (the budget, equal
for all); after each chunk the validation digits are scored exactly, per image, in the quantity the arm
is tested on; the checkpoint with the lowest validation bits/dim is kept (and training stops after
``patience`` evaluations without improvement): the step is a choice made on validation, recorded. The
best single order of each family is chosen on validation too. The test digits are read once, at the end.
Comparisons are paired by seed. The arms × seeds train in ``--threads`` worker processes, one torch
thread each: the numbers do not depend on how many.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from arlm.experiments import ExperimentConfig
from arlm.experiments.protocol import Protocol, compare_paired, summarize
from arlm.experiments.workers import in_workers, worker_count
from arlm.progress import progress

NAME = "orders-images"
SUMMARY = ("pixel orders on 8×8 digits, early-stopped on validation: separate models per order against one "
           "shared σ-GPT, order mixtures, infilling likelihood, samples")

PIXELS, SIDE = 64, 8
PIXEL_ORDERS = ("raster", "snake", "zorder", "hilbert", "fixed-random")
FAMILIES = {"Transformer": "transformer", "LSTM": "lstm"}
SHARED, RANDOM = "σ-GPT shared", "σ-GPT random"
ARMS: dict[str, tuple[str, str]] = {  # name -> (model family, order)
    **{f"{label} {order}": (family, order) for label, family in FAMILIES.items() for order in PIXEL_ORDERS},
    SHARED: ("sigma_gpt", "shared"),
    RANDOM: ("sigma_gpt", "random"),
}
MASKS = ("bottom given top", "left given right")  # the hidden half given the visible half
TRANSFORMER = {"n_layer": 2, "n_head": 4, "d_model": 64, "dropout": 0.0}
FULL = {"max_steps": 1000, "eval_interval": 100, "patience": 3, "seeds": 3, "samples": 10,
        "infill_images": 8, "infill_samples": 2, "random_orders": 4, "val_random_orders": 2,
        "train_images": 360,
        "models": {"transformer": [f"{k}={v}" for k, v in TRANSFORMER.items()],
                   "lstm": ["d_embed=32", "d_hidden=128"],
                   "sigma_gpt": [f"{k}={v}" for k, v in TRANSFORMER.items()]},
        "train": ["block_size=66", "batch_tokens=2112", "micro_batch_size=32", "lr=3e-3", "min_lr=3e-4",
                  "warmup_steps=50", "log_interval=100"]}
QUICK = {"max_steps": 8, "eval_interval": 4, "patience": 0, "seeds": 2, "samples": 4,
         "infill_images": 3, "infill_samples": 2, "random_orders": 2, "val_random_orders": 1,
         "train_images": 40,
         "models": {"transformer": ["n_layer=1", "n_head=2", "d_model=16"],
                    "lstm": ["d_embed=8", "d_hidden=16"],
                    "sigma_gpt": ["n_layer=1", "n_head=2", "d_model=16"]},
         "train": ["block_size=66", "batch_tokens=528", "micro_batch_size=8", "lr=3e-3",
                   "warmup_steps=2", "log_interval=4"]}
LN2 = math.log(2)


def permutations(seed: int) -> list[list[int]]:
    """The five pixel orders as permutations of 0..63 (reordered position i holds pixel perm[i]); the
    fixed random one is drawn from ``seed``, as the separately trained fixed-random model's is."""
    from arlm.data.orders import OrderSpec

    return [OrderSpec(o, seed, (SIDE, SIDE)).order().permutation(PIXELS).tolist() for o in PIXEL_ORDERS]


def image_rows(images: np.ndarray) -> np.ndarray:
    """Grey images (N, 8, 8) -> token rows (N, 66) ``[SOS] pixels in raster order [EOS]``."""
    from arlm.data.images import image_to_tokens
    from arlm.streams import EOS_ID, SOS_ID

    pixels = image_to_tokens(np.asarray(images))  # (N, 64)
    n = len(pixels)
    return np.concatenate([np.full((n, 1), SOS_ID), pixels, np.full((n, 1), EOS_ID)], axis=1)


# ---------------------------------------------------------------------------------------------
# Scoring: per-image NLL in nats, [EOS] included, every prediction over the full vocabulary
# ---------------------------------------------------------------------------------------------


def step_log_probs(model, rows: np.ndarray, order: list[int] | None) -> np.ndarray:
    """Log-probabilities (N, 65) of each generated token: (N, 66) rows read in ``order`` (a
    permutation of the 64 pixels; None: a left-to-right model reading raster order). Column i is the
    i-th pixel generated (σ-GPT: pixel order[i]; left-to-right: pixel i), column 64 the [EOS]."""
    import torch
    import torch.nn.functional as F

    tokens = torch.as_tensor(rows, dtype=torch.long)
    with torch.no_grad():
        if order is None:
            return model.score(tokens).double().cpu().numpy()
        logits = model.forward_ordered(tokens, torch.as_tensor(order))[:, :-1].double()  # (N, 65, V)
        targets = tokens.gather(1, torch.tensor([0, *[p + 1 for p in order], PIXELS + 1])[None, 1:]
                                .expand(len(tokens), -1))  # (N, 65) x_σ(1) … x_σ(64), [EOS]
        return F.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu().numpy()


def order_nlls(model, family: str, rows: np.ndarray, order: list[int]) -> np.ndarray:
    """NLL (N,) of each image under ``model`` reading its pixels in ``order``."""
    if family == "sigma_gpt":
        return -step_log_probs(model, rows, order).sum(1)
    from arlm.evaluate.orders import sequence_nlls

    reordered = rows.copy()
    reordered[:, 1:-1] = rows[:, 1:-1][:, order]
    return sequence_nlls(model, reordered.reshape(-1))


def random_order_nlls(model, rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """NLL (count, N) of each image under σ-GPT in ``count`` random orders (the same orders for every
    image, drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    return np.stack([order_nlls(model, "sigma_gpt", rows, rng.permutation(PIXELS).tolist())
                     for _ in range(count)])


def bits_per_dim(nlls: np.ndarray) -> float:
    """Bits per pixel of per-image NLLs in nats (N,)."""
    return float(np.sum(nlls) / (LN2 * len(nlls) * PIXELS))


def arm_nlls(arm: str, model, rows: np.ndarray, seed: int, random_orders: int) -> np.ndarray:
    """(orders, N) per-image NLLs of an arm: its own order (1 row); the shared σ-GPT's five orders; σ-GPT
    in ``random_orders`` random orders."""
    family, order = ARMS[arm]
    perms = permutations(seed)
    if arm == SHARED:
        return np.stack([order_nlls(model, family, rows, p) for p in perms])
    if arm == RANDOM:
        return random_order_nlls(model, rows, random_orders, seed)
    return order_nlls(model, family, rows, perms[PIXEL_ORDERS.index(order)])[None]


# ---------------------------------------------------------------------------------------------
# The work: one job trains one arm with one seed, early-stopped on validation (in a worker process)
# ---------------------------------------------------------------------------------------------


def _start() -> None:
    """A worker's start: nothing to load (the digits come with scikit-learn)."""


def _train_job(arm: str, seed: int, size: dict[str, Any], device: str):
    """Train ``arm`` with ``seed`` in chunks of ``eval_interval`` steps, keep the weights with the lowest
    validation bits/dim -> (arm, seed, model, record)."""
    from arlm.data.images import digits
    from arlm.usecases.train import TrainRequest, prepare_training

    family, order = ARMS[arm]
    overrides = [*size["models"][family], *size["train"], f"max_steps={size['max_steps']}", "eval_interval=0",
                 f"seed={seed}", f"device={device}", "show_progress=false"]
    if arm == SHARED:
        overrides.append("train_orders=" + json.dumps(permutations(seed), separators=(",", ":")))
    request = TrainRequest(family, corpus="digits", val_split="", preset="tiny", overrides=overrides,
                           out_dir=None, threads=1, order="raster" if family == "sigma_gpt" else order)
    trainer = prepare_training(request).trainer
    model = trainer.model
    val = image_rows(digits("val").images)
    train = image_rows(digits("train").images[: size["train_images"]])

    def score(rows: np.ndarray, count: int) -> float:
        model.eval()
        value = bits_per_dim(arm_nlls(arm, model, rows, seed, count).mean(0))
        model.train()
        return value

    curve, best, best_step, best_state, waited = [], math.inf, 0, None, 0
    while trainer.step < size["max_steps"]:
        trainer.train(steps=size["eval_interval"])
        value = score(val, size["val_random_orders"])
        curve.append([trainer.step, value])
        if value < best:
            best, best_step, best_state, waited = value, trainer.step, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if size["patience"] and waited >= size["patience"]:
                break
    model.load_state_dict(best_state)
    record = {"curve": curve, "best_step": best_step, "stopped_at": trainer.step, "val_bits_per_dim": best,
              "train_bits_per_dim": score(train, size["val_random_orders"]),
              "parameters": model.num_parameters()}
    if arm == SHARED:  # each order's validation bits/dim (to choose its best order on validation)
        model.eval()
        record["val_per_order"] = [bits_per_dim(n) for n in arm_nlls(arm, model, val, seed, 1)]
    return arm, seed, model.cpu().eval(), trainer.tokenizer, record


class TestDigits:
    """The test digits: what the protocol guards (reading ``.images`` outside the final test is
    refused)."""

    @property
    def images(self) -> np.ndarray:
        from arlm.data.images import digits

        return digits("test").images


def run(config: ExperimentConfig) -> dict:
    """Train every arm × seed (early-stopped on validation), choose each family's best order on
    validation, then read the test digits once: bits/dim per order, mixtures, infilling, samples."""
    size = QUICK if config.quick else FULL
    seeds = [config.seed + i for i in range(size["seeds"])]
    protocol = Protocol({"train": "digits/train", "val": "digits/val", "test": TestDigits()},
                        budget_unit="steps")
    results: dict[str, Any] = {"quick": config.quick, "seeds": seeds, "orders": list(PIXEL_ORDERS),
                               **{k: size[k] for k in ("max_steps", "eval_interval", "patience", "models",
                                                       "train", "random_orders", "val_random_orders",
                                                       "train_images")}}
    jobs = [(arm, seed, size, config.device) for seed in seeds for arm in ARMS]
    workers = worker_count(config.threads, len(jobs), os.cpu_count())
    results["workers"] = workers
    trained: dict[tuple[str, int], tuple] = {}
    with progress(config.show_progress) as bar:
        task = bar.add_task(f"training {len(ARMS)} arms × {len(seeds)} seeds, at most {size['max_steps']:,} "
                            "steps each", total=len(jobs) + 1)
        for arm, seed, model, tokenizer, record in in_workers(jobs, _train_job, _start, (), workers,
                                                              lambda: bar.advance(task)):
            trained[arm, seed] = model, record, tokenizer
            protocol.budget.spend(arm, size["max_steps"])
            protocol.choose(f"checkpoint step, {arm}, seed {seed}", record["best_step"],
                            candidates=len(record["curve"]))
        protocol.budget.check_equal()
        best = choose_best_orders(trained, seeds, protocol)
        bar.update(task, description="scoring every model on the test digits")
        with protocol.final_test() as test:
            images = np.asarray(test.images)
            results.update(final_test(trained, seeds, images, size))
        bar.advance(task)
    results["num_test"] = len(images)
    results["best_order"] = best
    results["comparisons"] = comparisons(results)
    results["protocol"] = protocol.record()
    return results


def choose_best_orders(trained: dict, seeds: list[int], protocol: Protocol) -> dict[str, str]:
    """Each family's (and the shared σ-GPT's) best single order: the lowest validation bits/dim, mean
    over seeds; recorded as a choice on validation."""
    out = {}
    for label in FAMILIES:
        val = {o: np.mean([trained[f"{label} {o}", s][1]["val_bits_per_dim"] for s in seeds])
               for o in PIXEL_ORDERS}
        out[label] = protocol.choose(f"best order, {label}", min(val, key=val.get), candidates=len(val))
    shared = np.mean([trained[SHARED, s][1]["val_per_order"] for s in seeds], axis=0)
    out[SHARED] = protocol.choose(f"best order, {SHARED}", PIXEL_ORDERS[int(np.argmin(shared))],
                                  candidates=len(PIXEL_ORDERS))
    return out


def infill_nll(model, family: str, rows: np.ndarray, mask: str, visible_first: bool) -> np.ndarray:
    """NLL (N,) of the hidden half's pixels: reading the visible half first (log p(x_H | x_V), σ-GPT
    only), or in raster order (each hidden pixel given the pixels before it in raster order)."""
    grid = np.arange(PIXELS).reshape(SIDE, SIDE)
    hidden = (grid[SIDE // 2:] if mask == MASKS[0] else grid[:, : SIDE // 2]).reshape(-1)
    visible = np.setdiff1d(np.arange(PIXELS), hidden)
    order = [*visible.tolist(), *np.sort(hidden).tolist()] if visible_first else list(range(PIXELS))
    lp = step_log_probs(model, rows, order if family == "sigma_gpt" else None)  # (N, 65)
    steps = np.flatnonzero(np.isin(np.asarray(order), hidden))  # the hidden pixels' generation steps
    return -lp[:, steps].sum(1)


def final_test(trained: dict, seeds: list[int], images: np.ndarray, size: dict) -> dict[str, Any]:
    """Every number read on the test digits, per seed."""
    rows = image_rows(images)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    mixtures: dict[str, list[float]] = {label: [] for label in FAMILIES}
    infill: dict[str, dict[str, list[float]]] = {m: {} for m in MASKS}
    for seed in seeds:
        for arm in ARMS:
            model, record, _ = trained[arm, seed]
            nlls = arm_nlls(arm, model, rows, seed, size["random_orders"])
            row = {"seed": seed, **record, "bits_per_dim": bits_per_dim(nlls.mean(0))}
            if arm == SHARED:
                row["per_order"] = [bits_per_dim(n) for n in nlls]
                row["mixture"] = bits_per_dim(_mixture(nlls))
            if arm == RANDOM:
                row["raster"] = bits_per_dim(order_nlls(model, "sigma_gpt", rows, list(range(PIXELS))))
            runs[arm].append(row)
        for label in FAMILIES:
            nlls = np.concatenate([arm_nlls(f"{label} {o}", trained[f"{label} {o}", seed][0], rows, seed, 1)
                                   for o in PIXEL_ORDERS])
            mixtures[label].append(bits_per_dim(_mixture(nlls)))
        for mask in MASKS:
            for name, arm, first in ((INFILL_SIGMA, RANDOM, True),
                                     ("σ-GPT random, raster order", RANDOM, False),
                                     ("Transformer raster", "Transformer raster", False),
                                     ("LSTM raster", "LSTM raster", False)):
                nll = infill_nll(trained[arm, seed][0], ARMS[arm][0], rows, mask, first)
                infill[mask].setdefault(name, []).append(float(np.sum(nll) / (LN2 * len(nll) * PIXELS / 2)))
    first = seeds[0]
    shown = images[: size["infill_images"]]
    return {"arms": runs, "mixtures": mixtures, "infill": infill,
            "samples": _samples(trained, first, size["samples"]),
            "real": images[: size["samples"]].tolist(),
            "infill_pictures": {"originals": shown.tolist(),
                                **_infill_pictures(trained, first, shown, size["infill_samples"])},
            "infill_samples": size["infill_samples"]}


def _mixture(nlls: np.ndarray) -> np.ndarray:
    from arlm.evaluate.orders import mixture_nll

    return mixture_nll(nlls)


def _samples(trained: dict, seed: int, count: int) -> dict[str, list]:
    """``count`` images from each seed-``seed`` model: each separate model in its order, the shared
    σ-GPT in each of its orders, σ-GPT in random orders."""
    import torch

    from arlm.data.images import tokens_to_image
    from arlm.data.orders import OrderSpec
    from arlm.streams import UNK_ID
    from arlm.usecases.sample import sample_images

    out = {}
    for label in FAMILIES:
        for order in PIXEL_ORDERS:
            model, _, tokenizer = trained[f"{label} {order}", seed]
            spec = OrderSpec(order, seed, (SIDE, SIDE))
            out[f"{label} {order}"] = sample_images(model, tokenizer, spec, count, seed).tolist()
    for name, perm in zip(PIXEL_ORDERS, permutations(seed), strict=True):
        drawn = trained[SHARED, seed][0].sample(PIXELS, count, order=torch.tensor(perm), seed=seed,
                                                banned=(UNK_ID,))
        out[f"{SHARED}, {name}"] = tokens_to_image(drawn[:, 1:-1].numpy()).tolist()
    drawn = trained[RANDOM, seed][0].sample(PIXELS, count, seed=seed, banned=(UNK_ID,))
    out[RANDOM] = tokens_to_image(drawn[:, 1:-1].numpy()).tolist()
    return out


def _infill_pictures(trained: dict, seed: int, images: np.ndarray, samples: int) -> dict[str, list]:
    """The bottom half of ``images`` drawn given the top half, ``samples`` times each (N·S, 8, 8): the
    raster Transformer continues its prefix; σ-GPT (random orders) reads the known pixels first."""
    from arlm.data.images import image_to_tokens, tokens_to_image
    from arlm.decode.config import DecodingConfig
    from arlm.decode.infill import infill_tokens
    from arlm.streams import UNK_ID
    from arlm.usecases.decoding import decode

    model, _, tok = trained["Transformer raster", seed]
    raster = []
    for i, image in enumerate(images):
        prompt = [tok.sos_id, *image_to_tokens(image)[: PIXELS // 2].tolist()]
        config = DecodingConfig(num_samples=samples, max_new_tokens=PIXELS // 2, seed=seed + i,
                                banned=(tok.eos_id, tok.unk_id))
        drawn = decode(model, tok, prompt, config).rows()
        raster += [tokens_to_image(np.array(prompt[1:] + row)) for row in drawn]
    rows = image_rows(images)
    known = np.ones_like(rows, dtype=bool)
    known[:, 1 + PIXELS // 2 : -1] = False  # the bottom four rows are unknown
    filled = infill_tokens(trained[RANDOM, seed][0], rows, known, num_samples=samples, seed=seed,
                           banned=(UNK_ID,)).numpy()
    return {"Transformer raster": np.stack(raster).tolist(),
            RANDOM: tokens_to_image(filled[:, 1:-1]).tolist()}


# ---------------------------------------------------------------------------------------------
# Comparisons: A − B in bits/dim (infilling: bits per hidden pixel), paired by seed
# ---------------------------------------------------------------------------------------------


def values(results: dict, key: tuple) -> list[float]:
    """The per-seed numbers a comparison key names: ("arm", arm, metric[, order index]),
    ("mixture", family) or ("infill", mask, method)."""
    if key[0] == "mixture":
        return list(results["mixtures"][key[1]])
    if key[0] == "infill":
        return list(results["infill"][key[1]][key[2]])
    rows = results["arms"][key[1]]
    if len(key) == 4:
        return [r[key[2]][key[3]] for r in rows]
    return [r[key[2]] for r in rows]


def comparison_keys(results: dict) -> dict[str, tuple[tuple, tuple]]:
    """Every comparison: name -> (key of A, key of B); the best orders are those chosen on validation."""
    best = results["best_order"]
    out: dict[str, tuple[tuple, tuple]] = {}  # "A − B" -> (key of A, key of B)
    for label in FAMILIES:
        out[f"{label} mixture of 5 orders − {label} {best[label]}"] = (
            ("mixture", label), ("arm", f"{label} {best[label]}", "bits_per_dim"))
    i = PIXEL_ORDERS.index(best[SHARED])
    out[f"{SHARED} mixture of 5 orders − {SHARED} in {best[SHARED]}"] = (
        ("arm", SHARED, "mixture"), ("arm", SHARED, "per_order", i))
    out[f"{SHARED} mixture − Transformer mixture of 5 orders"] = (("arm", SHARED, "mixture"),
                                                                 ("mixture", "Transformer"))
    for i, order in enumerate(PIXEL_ORDERS):
        out[f"{SHARED} in {order} − Transformer {order}"] = (("arm", SHARED, "per_order", i),
                                                            ("arm", f"Transformer {order}", "bits_per_dim"))
    for order in PIXEL_ORDERS:
        out[f"LSTM {order} − Transformer {order}"] = (("arm", f"LSTM {order}", "bits_per_dim"),
                                                      ("arm", f"Transformer {order}", "bits_per_dim"))
    for order in ("fixed-random", "raster"):
        out[f"{RANDOM} in random orders − Transformer {order}"] = (
            ("arm", RANDOM, "bits_per_dim"), ("arm", f"Transformer {order}", "bits_per_dim"))
    for mask in MASKS:
        out[f"{INFILL_SIGMA}, {mask} − Transformer raster, {mask}"] = (
            ("infill", mask, INFILL_SIGMA), ("infill", mask, "Transformer raster"))
    mask = MASKS[1]  # (for the bottom half the two orders are the same order)
    out[f"{INFILL_SIGMA}, {mask} − σ-GPT random in raster order, {mask}"] = (
        ("infill", mask, INFILL_SIGMA), ("infill", mask, "σ-GPT random, raster order"))
    return out


INFILL_SIGMA = "σ-GPT random reading the visible half first"


def paired(results: dict, name: str):
    """The comparison ``name`` recomputed from the per-seed numbers (so every sentence follows them)."""
    a, b = comparison_keys(results)[name]
    name_a, name_b = name.split(" − ", 1)
    return compare_paired(values(results, a), values(results, b), name_a, name_b)


def comparisons(results: dict) -> dict[str, dict[str, Any]]:
    """Every comparison's difference (mean, std, 95 % interval) and verdict."""
    from dataclasses import asdict

    out = {}
    for name, (a, b) in comparison_keys(results).items():
        c = compare_paired(values(results, a), values(results, b))
        out[name] = {"difference": asdict(c.difference), "verdict": c.verdict}
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _summary(xs: list[float]) -> dict[str, float]:
    from dataclasses import asdict

    return asdict(summarize(xs))


def _cell(xs: list[float]) -> str:
    s = summarize(xs)
    if math.isnan(s.std):
        return f"{s.mean:.4f}"
    return f"{s.mean:.4f} ± {s.std:.4f} [{s.low:.4f}, {s.high:.4f}]"


def _bar_groups(results: dict) -> tuple[list[str], dict[str, list[list[float]]]]:
    """x labels (the orders, then the mixture) and, per model, the per-seed numbers at each label."""
    labels = [*PIXEL_ORDERS, "mixture\nof 5"]
    groups = {}
    for label in FAMILIES:
        groups[f"{label} (one model per order)"] = [
            *[values(results, ("arm", f"{label} {o}", "bits_per_dim")) for o in PIXEL_ORDERS],
            values(results, ("mixture", label))]
    groups[f"{SHARED} (one model, 5 orders)"] = [
        *[values(results, ("arm", SHARED, "per_order", i)) for i in range(len(PIXEL_ORDERS))],
        values(results, ("arm", SHARED, "mixture"))]
    return labels, groups


def _half(xs: list[float]) -> float:
    s = summarize(xs)
    return 0.0 if math.isnan(s.low) else s.high - s.mean


def plot_bits(results: dict, path: Path) -> Path:
    """Left: test bits/dim from zero per order and mixture (mean of seeds, 95 % interval). Right: every
    paired difference A − B in bits/dim with its 95 % interval, around 0."""
    from arlm.experiments.plots import new_figure, save_png

    labels, groups = _bar_groups(results)
    fig = new_figure(12.0, 5.0)
    ax, dx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    width = 0.8 / (len(groups) + 1)
    for k, (name, cols) in enumerate(groups.items()):
        xs = np.arange(len(labels)) + (k - len(groups) / 2) * width
        ax.bar(xs, [np.mean(c) for c in cols], width, yerr=[_half(c) for c in cols], capsize=2, label=name)
    sg = values(results, ("arm", RANDOM, "bits_per_dim"))
    ax.bar([len(labels) - 1 + (len(groups) / 2) * width], [np.mean(sg)], width, yerr=[_half(sg)], capsize=2,
           label=f"{RANDOM} (random orders)")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    top = max(max(np.mean(c) for c in cols) for cols in groups.values())
    ax.set_ylim(0, max(top, np.mean(sg)) * 1.25)
    ax.set_ylabel("test bits per dimension (from 0)")
    ax.set_title(f"mean of {len(results['seeds'])} seeds, 95 % interval", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    names = [n for n, (a, _) in comparison_keys(results).items() if a[0] != "infill"]
    diffs = [paired(results, n).difference for n in names]
    ys = np.arange(len(names))[::-1]
    err = [[0 if math.isnan(d.low) else d.mean - d.low for d in diffs],
           [0 if math.isnan(d.high) else d.high - d.mean for d in diffs]]
    dx.errorbar([d.mean for d in diffs], ys, xerr=err, fmt="o", ms=3, capsize=2, color="#4477aa")
    dx.axvline(0, color="black", lw=0.8)
    dx.set_yticks(ys, names, fontsize=6)
    dx.set_xlabel("A − B, test bits per dimension (below 0: A better)")
    dx.set_title("paired differences, 95 % intervals", fontsize=9)
    return save_png(fig, path)


def plot_curves(results: dict, path: Path) -> Path:
    """Validation bits/dim against steps, one line per seed, one panel per model kind; a ring marks the
    checkpoint kept (the lowest validation bits/dim)."""
    from arlm.experiments.plots import new_figure, save_png

    panels = {label: [f"{label} {o}" for o in PIXEL_ORDERS] for label in FAMILIES}
    panels["σ-GPT"] = [SHARED, RANDOM]
    fig = new_figure(12.0, 3.8)
    for p, (title, arms) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for i, arm in enumerate(arms):
            for k, r in enumerate(results["arms"][arm]):
                curve = np.array(r["curve"], dtype=float)  # (evaluations, 2): step, bits/dim
                ax.plot(curve[:, 0], curve[:, 1], color=f"C{i}", lw=1, alpha=0.7,
                        label=arm if k == 0 else None)
                ax.plot([r["best_step"]], [r["val_bits_per_dim"]], "o", color=f"C{i}", mfc="none", ms=5)
        ax.set_title(f"{title} (one line per seed; ring: checkpoint kept)", fontsize=8)
        ax.set_xlabel("training step")
        if p == 0:
            ax.set_ylabel("validation bits per dimension")
        ax.legend(fontsize=6)
    return save_png(fig, path)


def plot_infill(results: dict, path: Path) -> Path:
    """Bits per hidden pixel from zero, per mask and method (mean of seeds, 95 % interval)."""
    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(8.0, 3.8)
    ax = fig.add_subplot()
    methods = list(next(iter(results["infill"].values())))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        cols = [results["infill"][m][method] for m in MASKS]
        xs = np.arange(len(MASKS)) + (k - (len(methods) - 1) / 2) * width
        ax.bar(xs, [np.mean(c) for c in cols], width, yerr=[_half(c) for c in cols], capsize=2, label=method)
    ax.set_xticks(range(len(MASKS)), [f"hidden {m.replace('given', 'half given visible')} half"
                                      for m in MASKS], fontsize=8)
    top = max(np.mean(v) for m in results["infill"].values() for v in m.values())
    ax.set_ylim(0, top * 1.35)
    ax.set_ylabel("bits per hidden pixel (from 0)")
    ax.set_title("infilling likelihood of the hidden half", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return save_png(fig, path)


def plot_pictures(results: dict, out_dir: Path) -> tuple[Path, Path]:
    """samples.png (a row of real test digits, then each model's draws) and infill_samples.png,
    nearest-neighbour upscaled ×10 with gaps."""
    from arlm.data.image_render import save_image_grid

    names = list(results["samples"])
    rows = [np.asarray(results["real"]), *[np.asarray(results["samples"][n]) for n in names]]
    samples = save_image_grid(out_dir / "samples.png", np.concatenate(rows), columns=len(rows[0]),
                              row_labels=["real test digits", *names], scale=10,
                              title=f"samples from the seed-{results['seeds'][0]} models")
    pics = results["infill_pictures"]
    originals = np.asarray(pics["originals"])
    n, k = len(originals), results["infill_samples"]
    masked = originals.copy()
    masked[:, SIDE // 2:, :] = 8  # the unknown half, drawn mid-grey
    grid, labels = [originals, masked], ["real test digit", "given (grey: unknown)"]
    for name in ("Transformer raster", RANDOM):
        filled = np.asarray(pics[name]).reshape(n, k, SIDE, SIDE)
        for j in range(k):
            grid.append(filled[:, j])
            labels.append(f"{name}, draw {j + 1}")
    infill = save_image_grid(out_dir / "infill_samples.png", np.concatenate(grid), columns=n,
                             row_labels=labels, scale=10, title="bottom half drawn given the top half")
    return samples, infill


def render(results: dict, out_dir: Path) -> str:
    """The report's Markdown, with bits_per_dim.png, curves.png, infill.png, infill_samples.png and
    samples.png."""
    from arlm.experiments.protocol import A_LOWER, B_LOWER, protocol_sentence

    out_dir = Path(out_dir)
    bars, curves, infill = (plot_bits(results, out_dir / "bits_per_dim.png"),
                            plot_curves(results, out_dir / "curves.png"),
                            plot_infill(results, out_dir / "infill.png"))
    samples, infill_pics = plot_pictures(results, out_dir)
    n = len(results["seeds"])
    labels, groups = _bar_groups(results)
    table = ["| order | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for j, label in enumerate(labels):
        cells = " | ".join(_cell(cols[j]) for cols in groups.values())
        table.append(f"| {label.replace(chr(10), ' ')} | {cells} |")
    table.append(f"| {RANDOM}, random orders | {_cell(values(results, ('arm', RANDOM, 'bits_per_dim')))} "
                 "| | |")
    verdict_words = {A_LOWER: "A lower", B_LOWER: "B lower"}
    comp = ["| A − B | mean | 95 % interval | verdict |", "|---|---:|---|---|"]
    for name in comparison_keys(results):
        d = paired(results, name)
        interval = "–" if math.isnan(d.difference.low) else \
            f"[{d.difference.low:+.4f}, {d.difference.high:+.4f}]"
        comp.append(f"| {name} | {d.difference.mean:+.4f} | {interval} | "
                    f"{verdict_words.get(d.verdict, 'not distinguishable')} |")
    training = ["| arm | parameters | chosen step (per seed) | validation bits/dim | train bits/dim "
                "(first {} train digits) | validation − train |".format(results["train_images"]),
                "|---|---:|---|---|---|---|"]
    for arm, runs in results["arms"].items():
        val = [r["val_bits_per_dim"] for r in runs]
        gap = [r["val_bits_per_dim"] - r["train_bits_per_dim"] for r in runs]
        steps = ", ".join(str(r["best_step"]) for r in runs)
        train = _cell([r["train_bits_per_dim"] for r in runs])
        training.append(f"| {arm} | {runs[0]['parameters']:,} | {steps} | {_cell(val)} | {train} "
                        f"| {_cell(gap)} |")
    infill_table = ["| method | " + " | ".join(f"hidden {m}" for m in MASKS) + " |",
                    "|---|" + "---|" * len(MASKS)]
    for method in next(iter(results["infill"].values())):
        infill_table.append(f"| {method} | " + " | ".join(_cell(results["infill"][m][method]) for m in MASKS)
                            + " |")
    lines = [
        "# Orders on images: pixel orders, shared and separate models, mixtures, infilling",
        "",
        "The chain rule holds in every pixel order, so each model below is a distribution over 8×8 digits "
        f"(17 grey levels: a uniform model needs log2 17 = 4.09 bits/dim). Test bits per dimension on the "
        f"{results['num_test']} test digits; every arm trained with {n} seeds "
        f"({', '.join(map(str, results['seeds']))}), mean ± std [95 % interval of the mean]."
        + (" **Quick run: tiny models, few steps.**" if results["quick"] else ""),
        "",
        f"Budget: at most {results['max_steps']:,} steps per model ({results['train'][1]}, i.e. "
        f"{_images_per_step(results)} digits a step); validation every {results['eval_interval']} steps, the "
        "weights with the lowest validation bits/dim kept"
        + (f", training stopped after {results['patience']} evaluations without improvement"
           if results["patience"] else "") + ". " + protocol_sentence(_short_protocol(results["protocol"])),
        "",
        "## Bits per dimension",
        "",
        f"![test bits per dimension]({bars.name})",
        "",
        *table,
        "",
        "Paired comparisons (A − B per seed in bits/dim, infilling in bits per hidden pixel; the best "
        f"orders chosen on validation: {', '.join(f'{k} {v}' for k, v in results['best_order'].items())}):",
        "",
        *comp,
        "",
        "## What the numbers show",
        "",
        *[p for sentence in findings(results) for p in (sentence, "")],
        "## Training: early stopping on validation",
        "",
        f"![validation curves]({curves.name})",
        "",
        *training,
        "",
        convergence_sentence(results),
        "",
        "## Infilling likelihood",
        "",
        "Bits per hidden pixel of the hidden half of each test digit. σ-GPT (trained in random orders) "
        "reading the visible half first scores log p(x_hidden | x_visible). Read in raster order (σ-GPT or "
        "a raster model), each hidden pixel is scored given only the pixels before it in raster order: for "
        "the bottom half that prefix is the whole visible top half, so the number is the same conditional; "
        "for the left half it is the hidden pixels' raster chain-rule terms, which see the right half only "
        "of the rows above, not log p(x_hidden | x_visible).",
        "",
        f"![infilling likelihood]({infill.name})",
        "",
        *infill_table,
        "",
        f"![bottom half drawn given the top half]({infill_pics.name})",
        "",
        "## Samples",
        "",
        f"Each row: {len(results['real'])} draws (temperature 1) from one seed-{results['seeds'][0]} model, "
        "upscaled ×10; the first row is real test digits for comparison. No number here measures how "
        "digit-like the draws are; the bits/dim above are the measure.",
        "",
        f"![samples]({samples.name})",
        "",
        f"Settings: training {', '.join(results['train'])}; models "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in results["models"].items())
        + f"; σ-GPT in random orders scored over {results['random_orders']} random orders (validation: "
        f"{results['val_random_orders']}); {results['workers']} worker process(es).",
    ]
    return "\n".join(lines) + "\n"


def _images_per_step(results: dict) -> int:
    tokens = int(next(t for t in results["train"] if t.startswith("batch_tokens=")).split("=")[1])
    return tokens // (PIXELS + 2)


def _short_protocol(record: dict) -> dict:
    """The protocol record with the per-run checkpoint steps left out of the sentence (the training
    table lists them)."""
    choices = {k: v for k, v in record.get("choices", {}).items() if not k.startswith("checkpoint step")}
    steps = sum(1 for k in record.get("choices", {}) if k.startswith("checkpoint step"))
    choices["checkpoint step"] = f"one per arm and seed ({steps}, listed below)"
    budget = record.get("budget")
    if budget:
        amounts = set(budget["per_arm"].values())
        budget = {"unit": budget["unit"], "per_arm": {"every arm": next(iter(amounts))}} \
            if len(amounts) == 1 else budget
    return {**record, "choices": choices, "candidates": {}, "budget": budget}


def _count(results: dict, names: list[str]) -> tuple[int, int, int]:
    """How many of the comparisons ``names`` say A lower, B lower, not distinguishable."""
    from arlm.experiments.protocol import A_LOWER, B_LOWER

    verdicts = [paired(results, n).verdict for n in names]
    return verdicts.count(A_LOWER), verdicts.count(B_LOWER), len(verdicts) - verdicts.count(A_LOWER) \
        - verdicts.count(B_LOWER)


def _mean_of(results: dict, arms: list[str], field: str) -> float:
    return float(np.mean([r[field] for a in arms for r in results["arms"][a]]))


def _gap(results: dict, arms: list[str]) -> float:
    return float(np.mean([r["val_bits_per_dim"] - r["train_bits_per_dim"] for a in arms
                          for r in results["arms"][a]]))


def _at_budget_end(results: dict, arms: list[str]) -> str:
    """'k of n runs': how many of the arms' runs kept their last evaluation, at the budget's end."""
    runs = [r for a in arms for r in results["arms"][a]]
    return f"{sum(r['best_step'] == results['max_steps'] for r in runs)} of {len(runs)} runs"


def _spreads(results: dict) -> str:
    """Each model's worst − best order, test bits/dim (means over seeds)."""
    parts = []
    for label in FAMILIES:
        means = [np.mean(values(results, ("arm", f"{label} {o}", "bits_per_dim"))) for o in PIXEL_ORDERS]
        parts.append(f"{label} {max(means) - min(means):.3f}")
    shared = [np.mean(values(results, ("arm", SHARED, "per_order", i))) for i in range(len(PIXEL_ORDERS))]
    parts.append(f"{SHARED} {max(shared) - min(shared):.3f}")
    return ", ".join(parts)


def findings(results: dict) -> list[str]:
    """The conclusions, each written from the per-seed numbers."""
    from arlm.experiments.protocol import A_LOWER, B_LOWER, comparison_sentence

    names = list(comparison_keys(results))
    out = []
    mix = [n for n in names if n.split(" − ")[0].endswith("mixture of 5 orders")]
    text = ("Mixture against the best single order (chosen on validation). By Jensen the mixture is never "
            "worse than the average of its orders; against the best one it is measured. ")
    text += " ".join(comparison_sentence(paired(results, n), "bits/dim") for n in mix)
    shared = paired(results, mix[-1])
    text += (" LMConv (Jain et al. 2020) mixes 8 orders of one shared-weight model and reports 2.887 against "
             "2.909 bits/dim for one order on CIFAR-10; here the shared model's mixture "
             + {A_LOWER: "beats its best order too.", B_LOWER: "is worse than its best order."}.get(
                 shared.verdict, "and its best order are not distinguishable."))
    bound = math.log2(len(PIXEL_ORDERS)) / PIXELS
    text += (f" Since p_mix(x) ≥ p_best(x) / {len(PIXEL_ORDERS)}, a mixture of {len(PIXEL_ORDERS)} orders is "
             f"at most log2 {len(PIXEL_ORDERS)} / {PIXELS} = {bound:.3f} bits/dim worse than its best order; "
             "it gains when the other orders give the same digits comparable probability. The spread from "
             f"the best to the worst order (test bits/dim, means over seeds): {_spreads(results)}.")
    out.append(text)
    name = f"{SHARED} mixture − Transformer mixture of 5 orders"
    lower, higher, same = _count(results, [n for n in names if n.startswith(f"{SHARED} in ")])
    out.append("One shared model against five separate ones (the same Transformer layers; σ-GPT adds a "
               "second position table that says which pixel comes next): "
               + comparison_sentence(paired(results, name), "bits/dim")
               + f" Per order, the shared σ-GPT is lower in {lower}, the separate Transformer in {higher}, "
               f"and the two are not distinguishable in {same} of the {len(PIXEL_ORDERS)} orders. Each model "
               f"had the same budget of {results['max_steps']:,} steps, so the five separate Transformers "
               f"together trained {len(PIXEL_ORDERS)}× the steps of the one shared model.")
    lstm = [n for n in names if n.startswith("LSTM ") and " − Transformer " in n]
    lower, higher, same = _count(results, lstm)
    t_arms, l_arms = ([f"{label} {o}" for o in PIXEL_ORDERS] for label in FAMILIES)
    params = [results["arms"][arms[0]][0]["parameters"] for arms in (l_arms, t_arms)]
    steps = [_mean_of(results, arms, "best_step") for arms in (l_arms, t_arms)]
    out.append(f"LSTM against Transformer, order by order: the LSTM is lower in {lower}, the Transformer in "
               f"{higher}, not distinguishable in {same} of the {len(PIXEL_ORDERS)} orders. What differs "
               f"between them here: parameters {params[0]:,} (LSTM) against {params[1]:,} (Transformer); "
               f"mean chosen step {steps[0]:.0f} against {steps[1]:.0f} (best at the budget's last "
               f"evaluation in {_at_budget_end(results, l_arms)} against {_at_budget_end(results, t_arms)}); "
               f"validation − train bits/dim at the chosen step {_gap(results, l_arms):+.3f} against "
               f"{_gap(results, t_arms):+.3f}. These describe the two models; this experiment does not "
               "test which of them, if any, causes the difference.")
    r_vs_f = paired(results, f"{RANDOM} in random orders − Transformer fixed-random")
    r_vs_r = paired(results, f"{RANDOM} in random orders − Transformer raster")
    fixed = ["Transformer fixed-random"]
    out.append("σ-GPT in random orders (a fresh order per image, which it is told through its second "
               "position table) against a Transformer trained in one fixed random order: "
               + comparison_sentence(r_vs_f, "bits/dim") + " Against the raster Transformer: "
               + comparison_sentence(r_vs_r, "bits/dim")
               + f" Mean chosen step {_mean_of(results, [RANDOM], 'best_step'):.0f} (σ-GPT) against "
               f"{_mean_of(results, fixed, 'best_step'):.0f} (fixed random order), best at the budget's last "
               f"evaluation in {_at_budget_end(results, [RANDOM])} against {_at_budget_end(results, fixed)}; "
               f"validation − train {_gap(results, [RANDOM]):+.3f} against {_gap(results, fixed):+.3f} "
               f"bits/dim. The shared σ-GPT in the same fixed random order: "
               + comparison_sentence(paired(results, f"{SHARED} in fixed-random − Transformer fixed-random"),
                                     "bits/dim"))
    for mask in MASKS:
        hidden, visible = mask.split(" given ")
        text = (f"Infilling the {hidden} half given the {visible} half (bits per hidden pixel): "
                + comparison_sentence(paired(results, f"{INFILL_SIGMA}, {mask} − Transformer raster, {mask}"),
                                      "bits/pixel"))
        same = f"{INFILL_SIGMA}, {mask} − σ-GPT random in raster order, {mask}"
        if same in names:
            text += " The same σ-GPT read in raster order instead: " + comparison_sentence(
                paired(results, same), "bits/pixel")
        out.append(text)
    return out


def convergence_sentence(results: dict) -> str:
    """How many runs were still improving at the budget's last evaluation."""
    runs = [r for rows in results["arms"].values() for r in rows]
    last = [r for r in runs if r["best_step"] == results["max_steps"]]
    stopped = [r for r in runs if r["stopped_at"] < results["max_steps"]]
    text = (f"{len(last)} of {len(runs)} runs had their lowest validation bits/dim at the budget's last "
            f"evaluation (step {results['max_steps']:,}): ")
    text += ("they were still improving when the budget ended, so they are not trained to convergence."
             if last else "every run had stopped improving before the budget ended.")
    return text + (f" {len(stopped)} of {len(runs)} stopped early (patience)." if results["patience"] else "")
