"""`arlm serve` as a user runs it: one command starts the server; SIGTERM stops it cleanly; bad
input is one line and exit code 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from cli_helpers import arlm, console_script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts the installed script: a new Python that imports torch
def test_serve_starts_answers_and_stops_cleanly(folders, tmp_path):
    port = free_port()
    args = ["serve", str(folders["tf"]), str(folders["tri"]), "--port", str(port), "--api-key", "k",
            "--max-new-tokens-cap", "5"]
    # a process of its own: a live server on a real port, stopped by a real SIGTERM
    proc = subprocess.Popen([console_script(), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ARLM_CACHE": str(tmp_path / "cache")})
    try:
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}
        for _ in range(600):  # liveness bound: up to 60 s for torch to import and the models to load
            try:
                if httpx.get(url + "/v1/models", headers=auth).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        models = httpx.get(url + "/v1/models", headers=auth).json()["data"]
        assert [m["id"] for m in models] == ["tf", "tri"]
        assert httpx.get(url + "/v1/models").status_code == 401
        r = httpx.post(url + "/v1/generate", json={"model": "tri", "max_new_tokens": 6}, headers=auth)
        assert r.status_code == 422 and "--max-new-tokens-cap" in r.json()["detail"]
        r = httpx.post(url + "/v1/generate", json={"model": "tri", "max_new_tokens": 5}, headers=auth)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # SIGTERM is a normal end
    assert "Application shutdown complete" in err and "Traceback" not in err
    assert f"serving tf, tri on http://127.0.0.1:{port}" in err


def test_serve_bad_input_is_one_line(folders, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, word in [((str(tmp_path / "missing"),), "does not exist"),
                           ((str(folders["tf"]), "--queue", "0"), "queue"),
                           ((str(folders["tf"]), "--max-batch", "0"), "max_batch"),
                           ((str(folders["tf"]), "--request-timeout", "0"), "request_timeout"),
                           ((str(folders["tf"]), "--cors-origin", "example.org"), "--cors-origin"),
                           ((str(folders["tf"]), "--port", str(port)), "cannot listen")]:
            r = arlm("serve", *args, cwd=tmp_path)
            code, err = r.returncode, r.stderr
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert code == 2 and len(lines) == 1 and word in lines[0], err
            assert "Traceback" not in err


def start_serve(args: list[str], cwd, port: int, auth: dict[str, str]) -> subprocess.Popen:
    """`arlm serve ARGS` in a process of its own, once it answers (a liveness bound of 60 s)."""
    proc = subprocess.Popen([console_script(), "serve", *args, "--port", str(port)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ARLM_CACHE": str(cwd / "cache")})
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", headers=auth).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"arlm serve did not answer: {proc.communicate()}")


@pytest.mark.slow  # a new Python that imports torch, stopped by a real SIGTERM
def test_sigterm_ends_open_streams_with_a_final_event_and_exits_0(folders, tmp_path):
    port, auth = free_port(), {"Authorization": "Bearer k"}
    proc = start_serve([str(folders["tri"]), "--api-key", "k", "--max-new-tokens-cap", "100000"],
                       tmp_path, port, auth)
    url = f"http://127.0.0.1:{port}"
    eos = 2  # banned, so neither stream can end before the signal: they run until the server stops
    openai_body = {"model": "tri", "prompt": "the", "max_tokens": 100000, "stream": True,
                   "logit_bias": {str(eos): -100}, "stream_options": {"include_usage": True}}
    arlm_body = {"model": "tri", "prompt": "the", "max_new_tokens": 100000, "stream": True, "banned": [eos]}
    try:
        with httpx.Client(base_url=url, headers=auth, timeout=60) as client, \
                client.stream("POST", "/v1/completions", json=openai_body) as openai_stream, \
                client.stream("POST", "/v1/generate", json=arlm_body) as arlm_stream:
            assert openai_stream.status_code == 200 and arlm_stream.status_code == 200
            openai_lines = (line for line in openai_stream.iter_lines() if line)
            arlm_lines = (line for line in arlm_stream.iter_lines() if line)
            assert next(openai_lines).startswith("data: {") and next(arlm_lines) == "event: start"
            proc.send_signal(signal.SIGTERM)
            openai_rest, arlm_rest = list(openai_lines), list(arlm_lines)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # OpenAI's stream: the last choice chunk says "abort", then the usage, then [DONE]
    assert openai_rest[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in openai_rest[:-1]]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "abort" and set(finishes[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and 0 < chunks[-1]["usage"]["completion_tokens"] < 100000
    # arlm's stream: done with stop reason "shutdown"
    assert arlm_rest[-2] == "event: done" and json.loads(arlm_rest[-1][6:])["stop_reason"] == "shutdown"
    assert "Traceback" not in err and "Application shutdown complete" in err
    access = [line for line in err.splitlines() if '"POST /v1/completions HTTP/1.1" 200' in line]
    assert len(access) == 1, err  # the access log: one line per request, once it has ended
