"""The catalogue of bad inputs found by trying arlm as a new user would: each is one clear error.

Library-level checks here; the command line turns each ArlmError into one line and exit code 2
(tests/test_cli.py checks that path)."""

from __future__ import annotations

import socket

import pytest

from arlm.errors import ArlmError, ConfigError, FormatError, MismatchError, UnwritableError
from arlm.interop.arpa import write_arpa
from arlm.io import atomic_write
from arlm.models.registry import family_of
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.serve.server import listen


def test_export_arpa_of_a_neural_model_names_what_has_an_arpa_form(tmp_path):
    model = TransformerLM(TransformerConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, d_model=4))
    with pytest.raises(MismatchError, match="only n-gram models have an ARPA form; this is a 'transformer'"):
        write_arpa(model, tmp_path / "m.arpa")
    assert list(tmp_path.iterdir()) == []


def test_writing_a_file_onto_a_folder_names_the_folder_not_a_temp_file(tmp_path):
    with pytest.raises(UnwritableError, match=rf"{tmp_path} is a folder; name a file"):
        atomic_write(tmp_path).__enter__()
    assert list(tmp_path.iterdir()) == []


def test_a_run_folder_passed_as_a_model_suggests_its_checkpoints(tmp_path):
    model = TransformerLM(TransformerConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, d_model=4))
    model.save(tmp_path / "run" / "best")
    with pytest.raises(FormatError, match=r"is a training run, not a model folder; .*run/best"):
        family_of(tmp_path / "run")


@pytest.mark.parametrize(("host", "port", "words"), [
    ("127.0.0.1", 99999, "from 1 to 65535, got 99999"), ("127.0.0.1", -1, "from 1 to 65535, got -1"),
    ("127.0.0.1", 0, "from 1 to 65535"),
    ("no.such.host.invalid", 8000, r"cannot listen on no\.such\.host\.invalid"),
])
def test_the_server_checks_its_address_before_it_says_it_is_serving(host, port, words):
    with pytest.raises(ConfigError, match=words):
        listen(host, port)


def test_an_address_in_use_is_one_error():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(ArlmError, match=r"cannot listen on 127\.0\.0\.1"):
            listen("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
