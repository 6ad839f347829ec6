"""`arlm generate --draft/--draft-tokens/--quantize/--json/--no-fast` and `arlm eval --quantize`:
the same tokens on every path, the reported numbers, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from arlm.data.tokenizers import train_tokenizer
from arlm.models.ngram import NGramModel
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.usecases.checkpoints import load_model, save_model
from arlm.usecases.decoding import decode, load_draft
from cli_helpers import arlm, one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

LINES = ["to be or not to be , that is the question .", "the rest is silence .",
         "to sleep , perchance to dream .", "all the world is a stage ."] * 5


def _transformer(vocab_size: int, seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    model = TransformerLM(TransformerConfig(vocab_size=vocab_size, block_size=96, n_layer=2, n_head=2,
                                            d_model=32)).eval()
    with torch.no_grad():  # peaked distributions: varied greedy text
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fast")
    (root / "text.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    chars = train_tokenizer("char", LINES)
    stream = np.array([i for line in chars.encode_lines(LINES) for i in [1, *line.tolist(), 2]])
    save_model(root / "tf", _transformer(chars.vocab_size, 0), chars)
    save_model(root / "tf_draft", _transformer(chars.vocab_size, 1), chars)
    ngram = NGramModel.fit(stream, order=4, vocab=chars.vocab, smoothing="kn", discount_fallback=True)
    save_model(root / "char_ngram", ngram, chars)
    words = train_tokenizer("word", LINES)
    wstream = np.array([i for line in words.encode_lines(LINES) for i in [1, *line.tolist(), 2]])
    wngram = NGramModel.fit(wstream, order=2, vocab=words.vocab, smoothing="kn", discount_fallback=True)
    save_model(root / "word_ngram", wngram, words)
    other_chars = train_tokenizer("char", ["xyz qwv"])  # another character vocabulary
    save_model(root / "other_tf", _transformer(other_chars.vocab_size, 2), other_chars)
    return {name: root / name for name in ("tf", "tf_draft", "char_ngram", "word_ngram", "other_tf")} | {
        "root": root, "text": root / "text.txt"}


GREEDY = ("--prompt", "to be", "--strategy", "greedy", "--max-new-tokens", "40")


def _json(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_draft_and_path_gives_the_plain_greedy_tokens(models):
    root = models["root"]
    plain = _json(arlm("generate", models["tf"], *GREEDY, "--json", "--no-fast", cwd=root))
    assert plain["text"].startswith("to be") and len(plain["tokens"]) == plain["new_tokens"] == 40
    assert plain["tokens_per_s"] > 0 and plain["draft"] is None
    assert _json(arlm("generate", models["tf"], *GREEDY, "--json", cwd=root))["tokens"] == plain["tokens"]
    for draft in ("prompt-lookup", models["char_ngram"], models["tf_draft"]):
        for schedule in ("--fixed-draft", "--adaptive-draft"):
            out = _json(arlm("generate", models["tf"], *GREEDY, "--json", "--draft", draft, "--draft-tokens",
                             "3", schedule, cwd=root))
            assert out["tokens"] == plain["tokens"] and out["text"] == plain["text"]
            assert out["draft_tokens"] == 3 and out["adaptive_draft"] == (schedule == "--adaptive-draft")
            assert out["tokens_per_target_forward"] == pytest.approx(40 / out["target_forwards"])
            assert out["accepted"] == round(out["acceptance_rate"] * out["proposed"])
            assert out["rounds"] == out["target_forwards"] and out["mean_draft_tokens"] <= 3
            if schedule == "--fixed-draft":  # the draft really took part, every round
                assert out["proposed"] > 0 and out["rounds_off"] == 0
            elif draft == models["tf_draft"]:  # a step as costly as the target's: no round could pay,
                assert out["proposed"] == 0 and out["rounds_off"] == out["rounds"] == 40  # never called
            else:  # on a target this tiny a verifying pass costs 1.2-1.3 steps and the drafts rarely agree:
                # speculation stays mostly off (prompt lookup's first proposals, 2 of the first 6 accepted,
                # keep it on for a few rounds)
                assert out["rounds_off"] >= 0.7 * out["rounds"], out
    r = arlm("generate", models["tf"], *GREEDY, "--draft", "prompt-lookup", cwd=root)
    code, text, err = r.returncode, r.stdout, r.stderr
    assert code == 0 and text.strip() == plain["text"].strip() and "acceptance" in err


def test_sampling_with_a_draft_is_seeded(models):
    args = ("generate", models["tf"], "--prompt", "to", "--max-new-tokens", "30", "--seed", "4", "--json",
            "--draft", models["tf_draft"])
    a, b = (_json(arlm(*args, cwd=models["root"])) for _ in range(2))
    assert a["tokens"] == b["tokens"] and len(a["tokens"]) <= 30


def test_int8_generation_and_the_perplexity_change(models):
    root = models["root"]
    out = _json(arlm("generate", models["tf"], *GREEDY, "--json", "--quantize", "int8", cwd=root))
    assert out["quantize"] == "int8" and len(out["tokens"]) == 40
    ev = _json(arlm("eval", models["tf"], "--corpus", models["text"], "--split", "all", "--quantize", "int8",
                    "--json", cwd=root))
    fp32, int8 = ev["fp32"]["perplexity"], ev["int8"]["perplexity"]
    assert fp32 > 1 and int8 > 1 and fp32 != int8 and abs(int8 / fp32 - 1) < 0.05
    assert ev["perplexity_change_percent"] == pytest.approx((int8 / fp32 - 1) * 100)
    assert ev["fp32"]["num_tokens"] == ev["int8"]["num_tokens"] and ev["int8"]["tokens_per_s"] > 0
    plain = _json(arlm("eval", models["tf"], "--corpus", models["text"], "--split", "all", "--json",
                       cwd=root))
    assert plain["perplexity"] == pytest.approx(fp32)


@pytest.mark.parametrize("args, words", [
    (("--draft", "word_ngram"), ("tokenizer", "word")),  # another tokenizer
    (("--draft", "other_tf"), ("tokenizer",)),  # the same kind, another vocabulary
    (("--draft", "char_ngram", "--draft-tokens", "0"), ("--draft-tokens", "≥ 1")),
    (("--draft", "prompt-lookup", "--strategy", "beam"), ("beam",)),
    (("--draft", "prompt-lookup", "--num-samples", "2"), ("--num-samples",)),
    (("--draft", "text.txt"), ("text.txt",)),  # not a model: a text file read as ARPA fails
    (("--draft", "missing"), ("missing",)),
    (("--quantize", "int4"), ("int8",)),
])
def test_bad_input_is_one_line_and_exit_code_2(models, args, words):
    r = arlm("generate", "tf", "--prompt", "to", *args, cwd=models["root"])
    code, err = r.returncode, r.stderr
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], lines[0]


def test_quantizing_a_count_model_is_refused(models):
    r = arlm("generate", "char_ngram", "--quantize", "int8", cwd=models["root"])
    one_line_error(r, "neural")


def test_the_python_api_refuses_bad_drafts(models):
    from arlm.decode.config import DecodingConfig
    from arlm.errors import ConfigError, MismatchError

    model, tok = load_model(models["tf"])
    ids = [tok.sos_id, *tok.encode("to be")]
    greedy = DecodingConfig(strategy="greedy", max_new_tokens=5)
    with pytest.raises(ConfigError, match="ARModel"):
        decode(model, tok, ids, greedy, draft=object())
    with pytest.raises(ConfigError, match="≥ 1"):
        decode(model, tok, ids, greedy, draft=load_draft("prompt-lookup", tok),
                        draft_tokens=0)
    with pytest.raises(MismatchError, match="tokenizer"):
        load_draft(models["word_ngram"], tok)
    out = decode(model, tok, ids, greedy, draft=load_draft(models["char_ngram"], tok))
    assert out.tokens.tolist() == decode(model, tok, ids, greedy).tokens[0].tolist()


def test_a_distilled_draft_from_the_command_line(models, tmp_path):
    """`arlm distill-draft` writes the model's greedy choices beside it; `--draft distilled` reads them and
    gives plain greedy's tokens, agreeing more than the n-gram of the same text does."""
    root = models["root"]
    model = tmp_path / "tf"
    save_model(model, *load_model(models["tf"]))
    r = arlm("distill-draft", model, "--corpus", models["text"], "--split", "all", "--order", "6", cwd=root)
    assert r.returncode == 0 and "wrote" in r.stderr, r.stderr
    assert (model / "distilled_draft.safetensors").is_file()
    plain = _json(arlm("generate", model, *GREEDY, "--json", cwd=root))
    by_file = model / "distilled_draft.safetensors"
    runs = {spec: _json(arlm("generate", model, *GREEDY, "--json", "--draft", spec, "--fixed-draft",
                             cwd=root)) for spec in ("distilled", by_file, models["char_ngram"])}
    for out in runs.values():
        assert out["tokens"] == plain["tokens"]
    assert runs["distilled"]["accepted"] == runs[by_file]["accepted"] > runs[models["char_ngram"]]["accepted"]


@pytest.mark.parametrize("args, words", [
    (("--order", "1"), ("order", "≥ 2")),
    (("--order", "40"), ("use order ≤",)),
    (("--max-tokens", "1"), ("--max-tokens", "≥ 2")),
    (("--out", "."), ("folder",)),
    (("--corpus", "missing.txt"), ("missing.txt",)),
])
def test_distill_draft_bad_input_writes_nothing(models, args, words):
    root = models["root"]
    before = sorted(p.name for p in models["tf"].iterdir())
    one_line_error(arlm("distill-draft", "tf", "--corpus", "text.txt", "--split", "all", *args, cwd=root),
                   *words)
    assert sorted(p.name for p in models["tf"].iterdir()) == before


@pytest.mark.parametrize("draft, words", [
    ("distilled", ("distill-draft",)),  # the folder holds none yet
    ("nowhere.safetensors", ("does not exist",)),
    ("tf/model.safetensors", ("not a distilled draft",)),  # a model's weights
])
def test_a_missing_distilled_draft_is_one_line(models, draft, words):
    one_line_error(arlm("generate", "tf", "--prompt", "to", "--draft", draft, cwd=models["root"]), *words)


def test_a_distilled_draft_of_another_tokenizer_is_refused(models, tmp_path):
    root = models["root"]
    out = tmp_path / "other.safetensors"
    r = arlm("distill-draft", models["other_tf"], "--corpus", models["text"], "--split", "all", "--order",
             "3", "--out", out, cwd=root)
    assert r.returncode == 0, r.stderr
    one_line_error(arlm("generate", "tf", "--prompt", "to", "--draft", out, cwd=root), "tokenizer",
                   "distill-draft")


def test_distilling_a_model_of_another_order_is_refused(models, tmp_path):
    from arlm.data.orders import OrderSpec

    model, tok = load_model(models["tf"])
    save_model(tmp_path / "r2l", model, tok, OrderSpec("r2l"))
    one_line_error(arlm("distill-draft", tmp_path / "r2l", "--corpus", models["text"], "--split", "all",
                        cwd=models["root"]), "r2l", "left-to-right")
    assert not (tmp_path / "r2l" / "distilled_draft.safetensors").exists()
