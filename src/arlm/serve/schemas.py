"""Request bodies of the /v1 API (pydantic models: the OpenAPI page at /docs is generated from them).

Decoding settings are the fields of :class:`arlm.decode.config.DecodingConfig`, given flat next to
the prompt; :class:`DecodingFields` is made from those fields (their types, help texts and bounds),
so a knob is declared once, in the library. A field left out, or sent as JSON null, takes
DecodingConfig's default; the values are checked by DecodingConfig itself, so a bad one is answered
422 with the library's sentence naming the field. Unknown fields are refused (422), so a misspelt
knob is never silently ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from arlm.decode.config import KNOB_TYPES, STRATEGIES, DecodingConfig

MAX_TOKENS = 4096  # token ids a request may add after its prompt
KNOBS = tuple(f.name for f in dataclasses.fields(DecodingConfig))


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="A name from GET /v1/models (default: the first model).")


class _Decoding(Body):
    """What the requests that decode share: null knobs are unset, and the DecodingConfig they make."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """A knob sent as JSON null is left out (so it takes its default)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (k in KNOBS and v is None)}
        return data

    def decoding(self, **defaults: Any) -> DecodingConfig:
        """The DecodingConfig of the fields that were sent (``defaults`` for the others)."""
        given = {k: v for k, v in self.model_dump(exclude_unset=True).items() if k in KNOBS}
        return DecodingConfig.from_dict({**defaults, **given})


def _knob_field(f: dataclasses.Field) -> tuple[Any, Any]:
    """(type, pydantic Field) of one DecodingConfig field: optional, described, its bounds shown.

    The bounds go to the schema only: DecodingConfig checks them, with its own messages.
    """
    extra = f.metadata["bounds"].json_schema() if f.metadata["bounds"] is not None else {}
    if f.name == "strategy":
        extra["enum"] = [*STRATEGIES, None]
    return KNOB_TYPES[f.name] | None, Field(None, description=f.metadata["help"],
                                            json_schema_extra=extra or None)


DecodingFields = create_model(
    "DecodingFields", __base__=_Decoding, __doc__="The knobs of DecodingConfig (see docs/decoding.md).",
    **{f.name: _knob_field(f) for f in dataclasses.fields(DecodingConfig)})


class GenerateRequest(DecodingFields):
    prompt: str = Field("", description="Text to continue (after [SOS]); empty: from [SOS].")
    stream: bool = Field(False, description="Server-sent events: one `token` event per token, then `done`.")


class NextRequest(DecodingFields):
    prompt: str = Field("", description="The prefix (after [SOS]).")
    tokens: list[int] = Field(default_factory=list, max_length=MAX_TOKENS,
                              description="Token ids that continue the prompt.")
    top_n: int = Field(20, ge=1, description="How many candidates to return (the most probable).")


class BeamRequest(DecodingFields):
    prompt: str = Field("", description="Text to continue (after [SOS]).")


class ScoreRequest(Body):
    text: str = Field(..., description="The text to score as one sequence [SOS] text [EOS].")


class AttentionRequest(Body):
    prompt: str = Field("", description="The text (after [SOS]).")
    tokens: list[int] = Field(default_factory=list, max_length=MAX_TOKENS,
                              description="Token ids that continue the prompt.")
