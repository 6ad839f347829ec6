"""`arlm serve` as a user runs it: one command starts the server; SIGTERM stops it cleanly; bad
input is one line and exit code 2."""

from __future__ import annotations

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
        models = httpx.get(url + "/v1/models", headers=auth).json()["models"]
        assert [m["name"] for m in models] == ["tf", "tri"]
        assert httpx.get(url + "/v1/models").status_code == 401
        r = httpx.post(url + "/v1/generate", json={"model": "tri", "max_new_tokens": 6}, headers=auth)
        assert r.status_code == 422 and "--max-new-tokens-cap" in r.json()["detail"]
        r = httpx.post(url + "/v1/generate", json={"model": "tri", "max_new_tokens": 5}, headers=auth)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal once it has stopped
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
