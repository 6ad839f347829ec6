"""``arlm serve``: an HTTP API with streaming, and a web playground that shows how decoding works.

* :mod:`arlm.serve.models` — the checkpoints, loaded once, with short names;
* :mod:`arlm.serve.engine` — the model work of each endpoint (generation token by token, scoring,
  next-token distributions stage by stage, beam trees, attention maps), free of HTTP;
* :mod:`arlm.serve.batcher` — continuous batching: each model's concurrent generations decoded
  together, one forward per step, on a thread of its own;
* :mod:`arlm.serve.limits` — the server's caps and the bounded admission of requests;
* :mod:`arlm.serve.schemas` — the request and error bodies (the OpenAPI document at /openapi.json);
* :mod:`arlm.serve.service` — the server's state and the checks before any model work;
* :mod:`arlm.serve.app` — :func:`create_app`, the FastAPI application, and its routes;
* :mod:`arlm.serve.openai_api`, :mod:`arlm.serve.openai_schemas`, :mod:`arlm.serve.completions` —
  OpenAI's completions and model list beside arlm's API, on the same generation path;
* :mod:`arlm.serve.metrics` — ``GET /metrics`` (Prometheus) and the access log;
* :mod:`arlm.serve.server` — running it with uvicorn, in the foreground or in a thread;
* ``static/`` — the playground page (hand-written HTML, CSS and JavaScript; nothing from a CDN).

See docs/serving.md.
"""

from arlm.serve.app import create_app
from arlm.serve.limits import ServeError, ServeSettings
from arlm.serve.models import LoadedModel, load_models

__all__ = ["LoadedModel", "ServeError", "ServeSettings", "create_app", "load_models"]
