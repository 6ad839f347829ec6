"""The OpenAPI document is the contract: schemathesis generates requests from it (valid ones and
invalid ones, with a fixed seed and a fixed number per operation) and sends them to the app in
process (ASGI, no network). Every answer must be a declared status code, with the declared content
type and a body (or, for a stream, each server-sent event) that matches the declared schema; no 5xx.

Small caps keep each generated request cheap: at most 8 new tokens and 4 beams."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from arlm.serve import ServeSettings, create_app
from arlm.serve.openai_api import is_openai_path

CASES_PER_OPERATION = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


@pytest.fixture(scope="module")
def api_schema(models):
    app = create_app(models, ServeSettings(max_new_tokens_cap=8, num_beams_cap=4))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=CASES_PER_OPERATION, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_every_answer_keeps_the_contract(case):
    case.call_and_validate(checks=CHECKS)


def test_the_document_declares_arlm_errors_not_fastapis(client):
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        openai = is_openai_path(path)  # OpenAI's error shape, and 400 for every bad request
        error = {"$ref": f"#/components/schemas/{'OpenAIErrorBody' if openai else 'ErrorBody'}"}
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "401" in statuses, (method, path)
            if method == "post":
                expected = {"400", "404", "415", "503", "504"} | (set() if openai else {"413", "422"})
                assert expected <= statuses, (method, path)
            for status in statuses - {"200"}:
                assert operation["responses"][status]["content"]["application/json"]["schema"] == error


def test_a_405_says_which_methods_are_allowed(client):
    r = client.delete("/v1/health")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json() == {"detail": "Method Not Allowed"}
    r = client.delete("/v1/models")  # an OpenAI path: OpenAI's error shape, the header kept
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json()["error"]["message"] == "Method Not Allowed"
    assert client.get("/v1/generate").headers["allow"] == "POST"
