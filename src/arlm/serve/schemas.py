"""The /v1 API's request and error bodies (pydantic models: /openapi.json is generated from them).

Decoding settings are the fields of :class:`arlm.decode.config.DecodingConfig`, given flat next to
the prompt; :class:`DecodingFields` is made from those fields (their types, help texts and bounds),
so a knob is declared once, in the library. A field left out, or sent as JSON null, takes
DecodingConfig's default; the values are checked by DecodingConfig itself, so a bad one is answered
422 with the library's sentence naming the field. Unknown fields are refused (422), so a misspelt
knob is never silently ignored. Every optional field of every body takes JSON null as "left out"
(the OpenAPI document says so: each is nullable). Text that is not Unicode (a lone UTF-16
surrogate, "\\ud800") is refused (422), and ``banned`` and ``stop_strings`` have length caps.

:class:`ErrorBody` is the shape of every error answer.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from arlm.decode.config import KNOB_TYPES, STRATEGIES, DecodingConfig

MAX_TOKENS = 4096  # token ids a request may add after its prompt
MAX_LIST = 1000  # entries of `banned` and of `stop_strings` at most
MAX_STOP_CHARS = 1000  # characters of one stop string at most
KNOBS = tuple(f.name for f in dataclasses.fields(DecodingConfig))


class ErrorBody(BaseModel):
    """Every error answer: one line, and the request field it is about when there is one."""

    detail: str = Field(..., description="What is wrong and how to fix it, in one line.")
    field: str | None = Field(None, description="The request field at fault (a bad decoding setting, "
                                                "a bad or unknown field).")


def _nullable_optionals(schema: dict[str, Any], cls: type) -> None:
    """The OpenAPI side of "null is unset": every property that is not required also accepts null."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required or any(alt.get("type") == "null" for alt in prop.get("anyOf", ())):
            continue
        doc = {k: prop.pop(k) for k in ("title", "description", "default") if k in prop}
        schema["properties"][name] = {"anyOf": [prop, {"type": "null"}], **doc}


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_nullable_optionals)

    model: str | None = Field(None, description="A name from GET /v1/models (default: the first model).")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """An optional field sent as JSON null is left out (so it takes its default); a required one
        is then reported missing."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _unicode_only(cls, value: Any) -> Any:
        """Text must be Unicode: a lone surrogate cannot be encoded (nor answered) as UTF-8."""
        if _has_lone_surrogate(value):
            raise PydanticCustomError("lone_surrogate", "holds a lone UTF-16 surrogate (such as \\ud800), "
                                                        "which is not a character; send valid Unicode text")
        return value


class _Decoding(Body):
    """What the requests that decode share: the DecodingConfig their knobs make."""

    def decoding(self, **defaults: Any) -> DecodingConfig:
        """The DecodingConfig of the fields that were sent (``defaults`` for the others)."""
        given = {k: v for k, v in self.model_dump(exclude_unset=True).items() if k in KNOBS}
        return DecodingConfig.from_dict({**defaults, **given})


def _knob_field(f: dataclasses.Field) -> tuple[Any, Any]:
    """(type, pydantic Field) of one DecodingConfig field: optional, described, its bounds shown.

    The bounds go to the schema only: DecodingConfig checks them, with its own messages. The lists
    ``banned`` and ``stop_strings`` are capped here (``MAX_LIST`` entries, ``MAX_STOP_CHARS``
    characters a stop string), before DecodingConfig reads them.
    """
    extra = f.metadata["bounds"].json_schema() if f.metadata["bounds"] is not None else {}
    if f.name == "strategy":
        extra["enum"] = [*STRATEGIES, None]
    kind = KNOB_TYPES[f.name]
    if f.name == "stop_strings":
        kind = list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]]
    caps = {"max_length": MAX_LIST} if f.name in ("banned", "stop_strings") else {}
    return kind | None, Field(None, description=f.metadata["help"], json_schema_extra=extra or None, **caps)


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
