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
