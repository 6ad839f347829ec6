"""orders-images: one image model per pixel order, their mixture, samples and infilling (F4, F24).

**Claim.** An image is a sequence once a pixel order is chosen, and the chain rule holds in every
order, so any autoregressive model is an image model. Which order is easiest to learn is an empirical
question; since each order's model is a proper distribution p_σ(x), their uniform mixture

    p_mix(x) = (1/M) Σ_σ p_σ(x)        (the order ensemble of LMConv, Jain et al. 2020)

is one too, and -log p_mix(x) ≤ mean_σ -log p_σ(x) for every image (Jensen): the ensemble beats the
average order, and beats the best single order when the orders are wrong about different images.

Measured on scikit-learn's 8×8 digits (17 grey levels, test bits per dimension = pixel): the same
Transformer and the same LSTM trained for the same number of steps in raster, snake, Z-order, Hilbert
and one fixed random order; the mixture over those orders; σ-GPT trained on a fresh random order per
image (in raster order and in random orders); samples from each; and infilling the bottom half of
test digits from their top half (a raster model continues its prefix; σ-GPT can condition on any
known set of pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arlm.experiments import ExperimentConfig
from arlm.experiments.orders_common import train_in_order

NAME = "orders-images"
SUMMARY = ("Transformer and LSTM per pixel order on 8×8 digits: bits/dim, the order mixture, samples, "
           "infilling")

PIXEL_ORDERS = ("raster", "snake", "zorder", "hilbert", "fixed-random")
LOCAL_ORDERS = ("raster", "snake", "hilbert")  # chosen beforehand: consecutive pixels are neighbours
FAMILIES = ("transformer", "lstm")
FULL = {"steps": 300, "samples": 10, "infill_images": 8, "infill_samples": 3, "random_orders": 4,
        "models": {"transformer": ["n_layer=2", "n_head=4", "d_model=64", "dropout=0.0"],
                   "lstm": ["d_embed=32", "d_hidden=128"], "sigma_gpt": ["n_layer=2", "n_head=4",
                                                                          "d_model=64", "dropout=0.0"]},
        "train": ["block_size=66", "batch_tokens=2112", "micro_batch_size=32", "lr=3e-3",
                  "warmup_steps=20", "eval_interval=0", "log_interval=50"]}
QUICK = {"steps": 8, "samples": 4, "infill_images": 3, "infill_samples": 2, "random_orders": 2,
         "models": {"transformer": ["n_layer=1", "n_head=2", "d_model=16"],
                    "lstm": ["d_embed=8", "d_hidden=16"],
                    "sigma_gpt": ["n_layer=1", "n_head=2", "d_model=16"]},
         "train": ["block_size=66", "batch_tokens=528", "micro_batch_size=8", "lr=3e-3",
                   "warmup_steps=2", "eval_interval=0", "log_interval=4"]}
PIXELS = 64


def _bits_per_dim(nlls: np.ndarray) -> float:
    from arlm.evaluate.orders import bits_per_dim

    return bits_per_dim(float(np.sum(nlls)), len(nlls), PIXELS)


def _infill_raster(model, tok, tops: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Complete each image's bottom half by continuing its raster prefix (the top half): (N·S, 8, 8)."""
    from arlm.data.images import image_to_tokens, tokens_to_image
    from arlm.decode.config import DecodingConfig
    from arlm.usecases.decoding import decode

    out = []
    for i, top in enumerate(tops):
        prompt = [tok.sos_id, *image_to_tokens(top)[: PIXELS // 2].tolist()]
        config = DecodingConfig(num_samples=samples, max_new_tokens=PIXELS // 2, seed=seed + i,
                                banned=(tok.eos_id, tok.unk_id))
        for row in decode(model, tok, prompt, config).rows():
            out.append(tokens_to_image(np.array(prompt[1:] + row)))
    return np.stack(out)


def _infill_sigma(model, tops: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """σ-GPT fills the bottom half conditioned on the top half: (N·S, 8, 8)."""
    from arlm.data.images import image_to_tokens, tokens_to_image
    from arlm.decode.infill import infill_tokens
    from arlm.streams import EOS_ID, SOS_ID, UNK_ID

    tokens = np.array([[SOS_ID, *image_to_tokens(im).tolist(), EOS_ID] for im in tops])  # (N, 66)
    known = np.ones_like(tokens, dtype=bool)
    known[:, 1 + PIXELS // 2 : -1] = False  # the bottom four rows are unknown
    filled = infill_tokens(model, tokens, known, num_samples=samples, seed=seed, banned=(UNK_ID,)).numpy()
    return tokens_to_image(filled[:, 1:-1])


def run(config: ExperimentConfig) -> dict:
    """Train every (family, order), evaluate, mix, sample and infill; returns JSON-ready results."""
    import torch

    from arlm.data.images import digits, tokens_to_image
    from arlm.data.orders import reorder_split
    from arlm.evaluate.orders import mixture_nll, sequence_nlls
    from arlm.streams import UNK_ID
    from arlm.usecases.data import encode_split
    from arlm.usecases.evaluate import random_orders_bits
    from arlm.usecases.sample import sample_images

    torch.set_num_threads(config.threads)
    size = QUICK if config.quick else FULL
    train = [*size["train"], f"max_steps={size['steps']}", f"device={config.device}"]
    test_images = digits("test").images
    results: dict = {"quick": config.quick, "seed": config.seed, "steps": size["steps"],
                     "models": size["models"], "train": size["train"], "num_test": len(test_images),
                     "bits_per_dim": {}, "mixture": {}, "samples": {}}
    tops = test_images[: size["infill_images"]]
    results["infill"] = {"originals": tops.tolist()}
    for family in FAMILIES:
        per_order, nlls = {}, []
        for order in PIXEL_ORDERS:
            model, tok, spec = train_in_order(family, "digits", order, [*size["models"][family], *train],
                                              config.seed, config.threads)
            test = encode_split("digits", tok, "test").encoded
            nll = sequence_nlls(model, reorder_split(test, spec).tokens)
            per_order[order] = _bits_per_dim(nll)
            nlls.append(nll)
            images = sample_images(model, tok, spec, size["samples"], config.seed)
            results["samples"][f"{family} {order}"] = images.tolist()
            if family == "transformer" and order == "raster":
                results["infill"]["raster transformer"] = _infill_raster(
                    model, tok, tops, size["infill_samples"], config.seed).tolist()
        results["bits_per_dim"][family] = per_order
        best = min(per_order, key=per_order.get)
        local = np.stack([n for o, n in zip(PIXEL_ORDERS, nlls, strict=True) if o in LOCAL_ORDERS])
        results["mixture"][family] = {"bits_per_dim": _bits_per_dim(mixture_nll(np.stack(nlls))),
                                      "local_bits_per_dim": _bits_per_dim(mixture_nll(local)),
                                      "best_order": best, "best_bits_per_dim": per_order[best],
                                      "mean_bits_per_dim": float(np.mean(list(per_order.values())))}
    model, tok, spec = train_in_order("sigma_gpt", "digits", "random", [*size["models"]["sigma_gpt"], *train],
                                      config.seed, config.threads)
    test = encode_split("digits", tok, "test").encoded
    raster = _bits_per_dim(sequence_nlls(model, test.tokens))
    orders = random_orders_bits(model, test, size["random_orders"], config.seed, len(test_images) * PIXELS)
    results["sigma_gpt"] = {"raster": raster, "random_orders": orders.values, "random_mean": orders.mean,
                            "random_std": orders.std, "nll_per_image_std_nats": orders.nll_per_sequence_std}
    drawn = model.sample(PIXELS, size["samples"], seed=config.seed, banned=(UNK_ID,))[:, 1:-1].cpu().numpy()
    results["samples"]["σ-GPT random"] = tokens_to_image(drawn).tolist()
    results["infill"]["σ-GPT"] = _infill_sigma(model, tops, size["infill_samples"], config.seed).tolist()
    results["infill_samples"] = size["infill_samples"]
    return results


def render(results: dict, out_dir: Path) -> str:
    """The report's Markdown, with ``bits_per_dim.png``, ``samples.png`` and ``infill.png``."""
    from arlm.data.image_render import save_image_grid
    from arlm.experiments.plots import new_figure, save_png

    out_dir = Path(out_dir)
    bpd, mix, sg = results["bits_per_dim"], results["mixture"], results["sigma_gpt"]
    orders = list(next(iter(bpd.values())))
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    width = 0.38
    for k, family in enumerate(bpd):
        xs = np.arange(len(orders) + 2) + (k - 0.5) * width
        ys = [bpd[family][o] for o in orders]
        ys += [mix[family]["bits_per_dim"], mix[family]["local_bits_per_dim"]]
        ax.bar(xs, ys, width, label=family)
    ax.axhline(sg["raster"], color="#cc6677", linestyle="--", label="σ-GPT (raster)")
    ax.set_xticks(range(len(orders) + 2), [*orders, "mix all", "mix local"], fontsize=8)
    lows = [v for f in bpd for v in bpd[f].values()] + [m["local_bits_per_dim"] for m in mix.values()]
    lows.append(sg["raster"])
    ax.set_ylim(min(lows) * 0.9, max(lows) * 1.03)
    ax.set_ylabel("test bits per dimension")
    ax.set_title(f"8×8 digits, {results['steps']} training steps per model")
    ax.legend(fontsize=8)
    save_png(fig, out_dir / "bits_per_dim.png")

    names = list(results["samples"])
    images = np.concatenate([np.asarray(results["samples"][n]) for n in names])
    save_image_grid(out_dir / "samples.png", images, columns=len(results["samples"][names[0]]),
                    row_labels=names, title="samples, one row per model and pixel order")
    inf = results["infill"]
    originals = np.asarray(inf["originals"])
    n, s = len(originals), results["infill_samples"]
    masked = originals.copy()
    masked[:, 4:, :] = 8  # the unknown half, drawn mid-grey
    rows, labels = [originals, masked], ["original", "given (grey: unknown)"]
    for name in ("raster transformer", "σ-GPT"):
        filled = np.asarray(inf[name]).reshape(n, s, 8, 8)
        for j in range(s):
            rows.append(filled[:, j])
            labels.append(f"{name} {j + 1}")
    save_image_grid(out_dir / "infill.png", np.concatenate(rows), columns=n, row_labels=labels,
                    title="bottom half completed from the top half")

    table = ["| order | " + " | ".join(bpd) + " |", "|---|" + "---|" * len(bpd)]
    table += [f"| {o} | " + " | ".join(f"{bpd[f][o]:.4f}" for f in bpd) + " |" for o in orders]
    table += ["| **mixture of all five orders** | "
              + " | ".join(f"**{mix[f]['bits_per_dim']:.4f}**" for f in bpd) + " |"]
    table += [f"| **mixture of {', '.join(LOCAL_ORDERS)}** | "
              + " | ".join(f"**{mix[f]['local_bits_per_dim']:.4f}**" for f in bpd) + " |"]
    verdicts = []
    for f, m in mix.items():
        gain, below = m["best_bits_per_dim"] - m["bits_per_dim"], m["mean_bits_per_dim"] - m["bits_per_dim"]
        local_gain = m["best_bits_per_dim"] - m["local_bits_per_dim"]
        verdicts.append(f"* {f}: the mixture of all five gives {m['bits_per_dim']:.4f} bits/dim, "
                        f"{'better' if gain > 0 else 'worse'} than the best single order ({m['best_order']}, "
                        f"{m['best_bits_per_dim']:.4f}) by {abs(gain):.4f}, and {below:.4f} below the "
                        f"average order; the mixture of the orders that keep neighbours adjacent "
                        f"({', '.join(LOCAL_ORDERS)}, chosen before training) gives "
                        f"{m['local_bits_per_dim']:.4f}, {'better' if local_gain > 0 else 'worse'} than the "
                        f"best single order by {abs(local_gain):.4f}.")
    lines = [
        "# Orders on images: pixel orders, their mixture, samples and infilling",
        "",
        "The chain rule holds in every pixel order, so each model below is a proper distribution over "
        f"8×8 digits; test bits per dimension on the {results['num_test']} test digits (17 grey levels: "
        "a uniform model needs log2 17 = 4.09)." + (" **Quick run: tiny models, few steps.**"
                                                     if results["quick"] else ""),
        "",
        "![bits per dimension per order](bits_per_dim.png)",
        "",
        *table,
        "",
        "The mixture is the order ensemble p_mix(x) = (1/M) Σ_σ p_σ(x) (LMConv, Jain et al. 2020); by "
        "Jensen it is never worse than the average of its orders, and it beats the best one when the "
        "orders are wrong about different digits but none is much worse than the rest:",
        "",
        *verdicts,
        "",
        f"σ-GPT, trained on a fresh random order per image: {sg['raster']:.4f} bits/dim in raster order, "
        f"{sg['random_mean']:.4f} ± {sg['random_std']:.4f} over {len(sg['random_orders'])} random orders "
        f"(each image's NLL varies by {sg['nll_per_image_std_nats']:.3f} nats across orders; an exact "
        "model: 0).",
        "",
        "## Samples",
        "",
        "![samples per order](samples.png)",
        "",
        "## Infilling",
        "",
        "The bottom half of test digits drawn given the top half: in raster order the top half is a "
        "prefix, so the raster Transformer just continues it; σ-GPT puts the known pixels first in its "
        "order and could condition on any known set (left half, scattered pixels) the same way.",
        "",
        "![infilling](infill.png)",
        "",
        f"Settings: {results['steps']} steps per model; training {', '.join(results['train'])}; models "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in results["models"].items())
        + f"; seed {results['seed']}.",
    ]
    return "\n".join(lines) + "\n"
