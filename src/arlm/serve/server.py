"""Running the app with uvicorn: :func:`serve` in the foreground (``arlm serve``), or
:func:`serve_in_thread` on a free localhost port (tests, the load benchmark, the screenshot).

Shutdown is clean either way: uvicorn stops accepting, running streams end after their current
token with a final event (arlm's: ``done`` with stop reason "shutdown"; OpenAI's: a chunk with finish
reason "abort", then ``data: [DONE]``), other responses finish (at most ``graceful_s`` seconds, then
they are cancelled, which stops their generation), and the app's lifespan then stops its worker
threads. SIGTERM is a normal end: ``arlm serve`` exits 0.

Each request is logged once its answer has ended (the logger ``arlm.serve.access``, at info level).
"""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from arlm.errors import ConfigError, Interrupted
from arlm.serve.metrics import ACCESS_LOG


def _server(config):
    """A uvicorn Server that, when asked to stop, first tells the app's streams to end."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            admission = getattr(getattr(config.app, "state", None), "admission", None)
            if admission is not None:
                admission.stopping = True
            await super().shutdown(sockets)

    return Server(config)


def _config(app: FastAPI, host: str, port: int, graceful_s: float, log_level: str):
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    # uvicorn's access log is off: the app writes its own line per request once the answer has ended
    # (arlm.serve.metrics), printed like uvicorn's lines at the same level
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"][ACCESS_LOG.name] = {"handlers": ["default"], "level": log_level.upper(),
                                              "propagate": False}
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                          timeout_graceful_shutdown=graceful_s, log_config=log_config)


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A socket bound to ``host``:``port``, before anything says "serving": a port outside 1–65535, a
    host that does not resolve, or an address in use is a one-line ConfigError naming the fix."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port must be a TCP port from 1 to 65535, got {port!r}; e.g. --port 8000")
    try:
        return _bind(host, port)
    except (OSError, OverflowError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise ConfigError(f"cannot listen on {host}:{port} ({reason}); pick another --port or "
                          "--host") from None


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, graceful_s: float = 5.0,
          log_level: str = "info", sock: socket.socket | None = None) -> None:
    """Serve ``app`` until Ctrl-C / SIGTERM, on ``sock`` if given (see :func:`listen`).

    The signal ends the server gracefully (uvicorn finishes the requests in flight, up to
    ``graceful_s``), which is a normal end: uvicorn raises the signal again once it has stopped, and
    the :class:`~arlm.errors.Interrupted` that the command line turns it into returns from here."""
    sock = listen(host, port) if sock is None else sock
    with contextlib.suppress(Interrupted):
        _server(_config(app, host, port, graceful_s, log_level)).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", graceful_s: float = 2.0) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a background thread; yields its base URL
    (``http://127.0.0.1:PORT``) and stops the server (and joins the thread) on exit."""
    sock = _bind(host, 0)
    port = sock.getsockname()[1]
    server = _server(_config(app, host, port, graceful_s, "warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="arlm-uvicorn")
    thread.start()
    for _ in range(600):  # up to 30 s for the start-up
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"the server on {host}:{port} did not start")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
