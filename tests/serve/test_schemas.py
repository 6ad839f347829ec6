"""The request schema is made from DecodingConfig's fields: every knob with its help text and bounds in
the OpenAPI document, and an explicit JSON null taken as "unset"."""

from __future__ import annotations

import dataclasses

import pytest

from arlm.decode.config import DecodingConfig

GOOD = {"model": "tf", "prompt": "the cat", "max_new_tokens": 4, "seed": 2}


def test_every_knob_is_in_the_openapi_document_with_its_help_and_bounds(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for request in ("GenerateRequest", "NextRequest", "BeamRequest"):
        properties = schemas[request]["properties"]
        for f in dataclasses.fields(DecodingConfig):
            assert properties[f.name]["description"] == f.metadata["help"], (request, f.name)
    top_p = schemas["GenerateRequest"]["properties"]["top_p"]
    assert top_p["exclusiveMinimum"] == 0 and top_p["maximum"] == 1


@pytest.mark.parametrize("knob", [f.name for f in dataclasses.fields(DecodingConfig)])
def test_null_means_unset(client, knob):
    """``"stop_strings": null`` was a 500; now every knob sent as null takes its default."""
    r = client.post("/v1/generate", json={**GOOD, knob: None})
    assert r.status_code == 200, r.text
    left_out = {k: v for k, v in GOOD.items() if k != knob}
    assert r.json() == client.post("/v1/generate", json=left_out).json()


@pytest.mark.parametrize(("path", "field"), [
    ("/v1/generate", "prompt"), ("/v1/generate", "stream"), ("/v1/generate", "model"),
    ("/v1/next", "tokens"), ("/v1/next", "top_n"), ("/v1/next", "prompt"),
    ("/v1/beam", "prompt"), ("/v1/attention", "tokens"), ("/v1/attention", "prompt"),
])
def test_null_means_unset_for_every_optional_field(client, path, field):
    body = {"model": "tf", "max_new_tokens": 2} if path != "/v1/attention" else {"model": "tf"}
    if path == "/v1/beam":
        body["num_beams"] = 2
    r = client.post(path, json={**body, field: None})
    assert r.status_code == 200, r.text
    assert r.json() == client.post(path, json=body).json()


def test_every_optional_field_is_nullable_in_the_document(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("GenerateRequest", "NextRequest", "BeamRequest", "ScoreRequest", "AttentionRequest"):
        required = set(schemas[name].get("required", ()))
        for field, prop in schemas[name]["properties"].items():
            nullable = {"type": "null"} in prop.get("anyOf", ())
            assert nullable == (field not in required), (name, field)
    assert schemas["ScoreRequest"]["required"] == ["text"]
