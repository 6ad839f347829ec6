"""Request bodies of the /v1 API (pydantic models: the OpenAPI page at /docs is generated from them).

Decoding settings are the fields of :class:`arlm.decode.config.DecodingConfig`, given flat next to
the prompt. A field left out takes DecodingConfig's default; the values are checked by
DecodingConfig itself, so a bad one is answered 422 with the library's sentence naming the field.
Unknown fields are refused (422), so a misspelt knob is never silently ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from arlm.decode.config import DecodingConfig

MAX_TOKENS = 4096  # token ids a request may add after its prompt

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="A name from GET /v1/models (default: the first model).")


class DecodingFields(Body):
    """The knobs of DecodingConfig (see docs/decoding.md)."""

    strategy: str | None = Field(None, description="sample, greedy, top-k, top-p or beam.")
    max_new_tokens: int | None = Field(None, description="New tokens at most (capped by the server).")
    temperature: float | None = Field(None, description="≥ 0; 0 is greedy, 1 the model's distribution.")
    top_k: int | None = Field(None, description="Keep the k most probable tokens (0: off).")
    top_p: float | None = Field(None, description="Nucleus mass in (0, 1] (1: off).")
    min_p: float | None = Field(None, description="Keep w iff p(w) ≥ min_p · max p (0: off).")
    repetition_penalty: float | None = Field(None, description="> 1 discourages repeats (1: off).")
    no_repeat_ngram_size: int | None = Field(None, description="Never repeat an n-gram of this size.")
    banned: list[int] | None = Field(None, description="Token ids never generated.")
    num_beams: int | None = Field(None, description="Beam width K (beam).")
    length_penalty: float | None = Field(None, description="Beam ranking s/|y|^α.")
    early_stopping: bool | str | None = Field(None, description="Beam: true, false or 'never'.")
    num_samples: int | None = Field(None, description="Sequences per request: 1 (beam: the n-best size).")
    stop_strings: list[str] | None = Field(None, description="Stop once the new text contains one.")
    seed: int | None = Field(None, description="The same seed gives the same tokens (default 0).")

    def decoding(self, **defaults: Any) -> DecodingConfig:
        """The DecodingConfig of the fields that were sent (``defaults`` for the others)."""
        names = set(DecodingFields.model_fields) - set(Body.model_fields)
        given = {k: v for k, v in self.model_dump(exclude_unset=True).items() if k in names}
        if "early_stopping" in given and given["early_stopping"] is None:
            del given["early_stopping"]
        return DecodingConfig.from_dict({**defaults, **given})


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
