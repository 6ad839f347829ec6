"""The model-family registry seen from the command line.

Every trainable family trains a step, saves, loads, evaluates and generates through `arlm`; a GPT-2
imported from a Hugging Face folder does the same as any checkpoint and decodes greedily exactly as HF's
`generate`; the same seed gives the same weights in two processes, and a run killed with SIGKILL and
resumed ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from arlm.models.registry import FAMILIES, TRAIN_COMMANDS
from cli_helpers import arlm, arlm_process, console_script, ok, one_line_error, word_lines
from extras import require

NO_TRANSFORMERS = "HF transformers is not installed (pip install -e .[interop])"

ONE_STEP = ["--threads", "1", "--set", "max_steps=2", "--set", "eval_interval=1", "--preset", "tiny"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("registry")
    (tmp / "text.txt").write_text(word_lines(300, seed=1))
    return tmp


def test_every_train_command_comes_from_the_registry():
    help_text = ok(arlm("train", "--help", cwd=Path.cwd()))
    for command in TRAIN_COMMANDS:
        assert command in help_text
    assert {family for family, _ in TRAIN_COMMANDS.values()} == {
        name for name, f in FAMILIES.items() if f.trainable}


@pytest.mark.parametrize("command", sorted(TRAIN_COMMANDS))
def test_each_family_trains_saves_loads_evaluates_and_generates(work, command):
    ok(arlm("train", command, "--corpus", "text.txt", "--split", "all", "--val-split", "all",
            "--out", f"run-{command}", *ONE_STEP, cwd=work))
    folder = work / f"run-{command}" / "last"
    family = json.loads((folder / "config.json").read_text())["family"]
    assert family == TRAIN_COMMANDS[command][0]
    report = json.loads(ok(arlm("eval", str(folder), "--corpus", "text.txt", "--split", "all", "--json",
                                cwd=work)))
    assert 0 < report["bits_per_char"] < 10
    text = ok(arlm("generate", str(folder), "--prompt", "the", "--strategy", "greedy",
                   "--max-new-tokens", "5", cwd=work))
    assert text.startswith("the")


# ---------------------------------------------------------------------------------------------
# GPT-2 in and out
# ---------------------------------------------------------------------------------------------

V, BOUNDARY = 24, 23  # a tiny GPT-2: 23 words and <|endoftext|>


def _hf_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(V - 1)} | {"<|endoftext|>": BOUNDARY}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    transformers = require("transformers", reason=NO_TRANSFORMERS)
    folder = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=BOUNDARY, eos_token_id=BOUNDARY)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # sharper than the default init, so greedy paths are not ties
        for p in model.parameters():
            p.mul_(8.0)
    model.save_pretrained(folder)
    _hf_tokenizer(folder / "tokenizer.json")
    return model, folder


def test_imported_gpt2_generates_hf_greedy_tokens_and_evaluates(hf_gpt2, tmp_path):
    hf, folder = hf_gpt2
    ok(arlm("import-gpt2", str(folder), "gpt", cwd=tmp_path))
    assert json.loads((tmp_path / "gpt" / "config.json").read_text())["family"] == "gpt2"
    prompt = [5, 9, 2]
    text = ok(arlm("generate", "gpt", "--prompt", " ".join(f"w{i}" for i in prompt), "--strategy", "greedy",
                   "--max-new-tokens", "12", cwd=tmp_path)).strip()
    ids = torch.tensor([[BOUNDARY, *prompt]])  # arlm opens a text with the boundary token, as GPT-2 did
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                          pad_token_id=BOUNDARY)[0, ids.shape[1]:].tolist()
    if BOUNDARY in ref:
        ref = ref[: ref.index(BOUNDARY)]
    assert text == " ".join(f"w{i}" for i in [*prompt, *ref])

    # eval: the same NLL as HF's loss over <|endoftext|> w… <|endoftext|>
    line = [3, 7, 7, 1, 12]
    (tmp_path / "t.txt").write_text(" ".join(f"w{i}" for i in line) + "\n")
    report = json.loads(ok(arlm("eval", "gpt", "--corpus", "t.txt", "--split", "all", "--json",
                                cwd=tmp_path)))
    seq = torch.tensor([[BOUNDARY, *line, BOUNDARY]])
    with torch.no_grad():
        loss = float(hf(seq, labels=seq).loss)
    assert report["nll_per_token"] == pytest.approx(loss, rel=1e-5)
    assert report["num_tokens"] == len(line) + 1


def test_gpt2_round_trip_and_bad_folders(hf_gpt2, tmp_path):
    transformers = require("transformers", reason=NO_TRANSFORMERS)
    hf, folder = hf_gpt2
    ok(arlm("import-gpt2", str(folder), "gpt", cwd=tmp_path))
    ok(arlm("export-gpt2", "gpt", "back", cwd=tmp_path))
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    x = torch.tensor([[BOUNDARY, 4, 8, 15]])
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, hf(x).logits, atol=1e-5, rtol=1e-5)
    assert (tmp_path / "back" / "tokenizer.json").is_file()

    # export over an existing non-empty folder: refused, the folder untouched
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    one_line_error(arlm("export-gpt2", "gpt", "busy", cwd=tmp_path), "not an empty folder")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt"]

    # no config.json; a config whose shapes do not match the weights
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    one_line_error(arlm("import-gpt2", str(bare), "out1", cwd=tmp_path), "config.json")
    wrong = json.loads((folder / "config.json").read_text()) | {"n_embd": 32}
    (bare / "config.json").write_text(json.dumps(wrong))
    one_line_error(arlm("import-gpt2", str(bare), "out2", cwd=tmp_path))
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()

    # a folder without tokenizer.json imports; commands that need text say so in one line
    (bare / "config.json").write_text((folder / "config.json").read_text())
    ok(arlm("import-gpt2", str(bare), "notok", cwd=tmp_path))
    one_line_error(arlm("generate", "notok", "--prompt", "w1", cwd=tmp_path), "tokenizer.json")
    # an n-gram folder is not a Transformer
    (tmp_path / "t.txt").write_text("w1 w2 w3\nw2 w3 w1\n" * 20)
    ok(arlm("train", "ngram", "--corpus", "t.txt", "--split", "all", "--order", "2",
            "--discount-fallback", "--out", "ng", cwd=tmp_path))
    one_line_error(arlm("export-gpt2", "ng", "ng-hf", cwd=tmp_path), "ngram")


# ---------------------------------------------------------------------------------------------
# Usage errors, whatever typer's click
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["nosuchcmd"], ["No such command", "nosuchcmd"]),
    (["train", "nosuchfamily"], ["No such command", "nosuchfamily"]),
    (["eval"], ["Missing argument"]),
    (["sample", "m", "--num-samples", "abc"], ["--num-samples"]),
    (["generate", "m", "--nosuchoption"], ["--nosuchoption"]),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, words):
    one_line_error(arlm(*args, cwd=tmp_path), *words)


# ---------------------------------------------------------------------------------------------
# The same seed gives the same run
# ---------------------------------------------------------------------------------------------

SEEDED = ["--threads", "1", "--preset", "tiny", "--set", "seed=7", "--set", "dropout=0.1",
          "--set", "eval_interval=5", "--set", "log_interval=5"]


def _train_cmd(out: str, steps: int) -> list[str]:
    return ["train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
            "--out", out, *SEEDED, "--set", f"max_steps={steps}"]


@pytest.mark.slow  # three training runs of 40 steps, one in a process of its own
def test_same_seed_same_weights_and_kill_9_resume_is_exact(work):
    ok(arlm(*_train_cmd("a", 40), cwd=work))
    ok(arlm_process(*_train_cmd("b", 40), cwd=work))  # in another process: nothing carried over in memory
    weights = (work / "a" / "last" / "model.safetensors").read_bytes()
    assert weights == (work / "b" / "last" / "model.safetensors").read_bytes()

    # killed at some step after its first checkpoint, then resumed from OUT/last: a process of its own,
    # since SIGKILL must end the whole program mid-step, with no cleanup, as a crash or an OOM kill does
    env = {**os.environ, "ARLM_CACHE": str(work / "cache")}
    proc = subprocess.Popen([console_script(), *_train_cmd("c", 40)], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = work / "c" / "last" / "trainer_state.json"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if state.is_file() and json.loads(state.read_text())["step"] >= 10:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    step = json.loads(state.read_text())["step"]
    ok(arlm(*_train_cmd("c", 40), "--resume", "c/last", cwd=work))
    assert (work / "c" / "last" / "model.safetensors").read_bytes() == weights, f"killed at step {step}"


def test_a_folder_of_an_unknown_family_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"family": "mamba"}))
    one_line_error(arlm("eval", "m", cwd=tmp_path), "unknown model family 'mamba'")
    one_line_error(arlm("generate", "m", cwd=tmp_path), "unknown model family")
