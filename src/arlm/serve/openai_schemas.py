"""The bodies of the OpenAI-compatible endpoints, in OpenAI's shapes (legacy completions, the model
list, errors), as pydantic models: the OpenAPI document at /openapi.json is generated from them.

:class:`CompletionRequest` takes OpenAI's fields (``prompt`` as a string, a list of strings, a list
of token ids or a list of such lists; ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``stop``,
``seed``, ``logprobs``, ``echo``, ``stream``, ``stream_options``, ``logit_bias``) and, as vLLM
does, three of arlm's knobs beyond them (``top_k``, ``min_p``, ``repetition_penalty``; the
``openai`` client sends them with ``extra_body``). Fields OpenAI has that a left-to-right model
cannot honour (``suffix``, a ``best_of`` above ``n``, presence and frequency penalties, a bias
other than -100) are accepted in the schema and refused by the route with a sentence saying why,
rather than ignored. As on arlm's own endpoints, JSON null means "left out", unknown fields are
refused, and text must be Unicode (:class:`arlm.serve.schemas.Body`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from arlm.serve.schemas import MAX_LIST, MAX_STOP_CHARS, MAX_TOKENS, Body

MAX_CHOICES = 16  # prompts × n in one request at most
MAX_LOGPROBS = 20  # the most likely tokens `logprobs` may ask for at each position
DEFAULT_MAX_TOKENS = 16  # OpenAI's default max_tokens (lowered to what the caps and the context allow)
TokenIds = Annotated[list[int], Field(max_length=MAX_TOKENS)]
StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(False, description="Send a last chunk with the usage counts (and no "
                                                   "choices) before `data: [DONE]`.")


class CompletionRequest(Body):
    """POST /v1/completions: OpenAI's legacy completions request."""

    prompt: (str | Annotated[list[str], Field(min_length=1, max_length=MAX_CHOICES)] | TokenIds
             | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_CHOICES)]) = Field(
        "", description="Text to continue (after [SOS]; empty: from [SOS]), a list of texts, the "
                        "token ids of one prompt, or a list of such lists. Each prompt gets `n` choices.")
    max_tokens: int | None = Field(
        None, ge=0, description=f"New tokens at most (default {DEFAULT_MAX_TOKENS}, or what the model's "
                                "context and the server's cap allow); 0 with `echo` scores the prompt.")
    temperature: float | None = Field(None, ge=0, description="≥ 0 (default 1); 0 is greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling: p in (0, 1] (1: off).")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="Choices per prompt; choice i is sampled with "
                                                        "seed + i.")
    stream: bool = Field(False, description="Server-sent events: one `data:` chunk per token, then "
                                            "`data: [DONE]`.")
    stream_options: StreamOptions | None = Field(None, description="Streaming only: include_usage.")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description=(
        "Return each token's log-probability under the model and the `logprobs` most likely tokens "
        "at each position (plus the chosen one)."))
    echo: bool = Field(False, description="Return the prompt before the completion (with its "
                                          "log-probabilities when `logprobs` is set).")
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_LIST)] | None = Field(
        None, description="Stop before the first of these strings (not included in the text).")
    seed: int | None = Field(None, description="The same seed gives the same completion (default 0).")
    logit_bias: dict[str, float] | None = Field(
        None, max_length=MAX_LIST, description="Token id -> bias; only -100 (never generate it) is "
                                               "supported.")
    user: str | None = Field(None, max_length=MAX_STOP_CHARS, description="Accepted and ignored.")
    suffix: str | None = Field(None, description="Not supported: a left-to-right model cannot fill in.")
    best_of: int | None = Field(None, ge=1, description="Only 1 (or equal to n) is supported.")
    presence_penalty: float | None = Field(None, description="Only 0 is supported; see "
                                                             "repetition_penalty.")
    frequency_penalty: float | None = Field(None, description="Only 0 is supported; see "
                                                              "repetition_penalty.")
    # arlm's knobs beyond OpenAI's (as vLLM accepts them)
    top_k: int | None = Field(None, ge=0, description="Keep the k most probable tokens (0: off).")
    min_p: float | None = Field(None, ge=0, le=1, description="Keep w iff p(w) ≥ min_p · max p (0: off).")
    repetition_penalty: float | None = Field(None, description="> 1 discourages repeats (1: off).")


class Logprobs(BaseModel):
    """OpenAI's legacy logprobs: per token, its text, log p under the model, the most likely tokens
    at that position, and where its text starts in the choice's text."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: Logprobs | None
    finish_reason: Literal["stop", "length", "abort"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    """The answer of POST /v1/completions (also each streamed chunk, with the text so far added)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """One model in OpenAI's shape, with arlm's description of it alongside."""

    id: str
    object: Literal["model"]
    created: int = Field(..., description="When the checkpoint was written (Unix time; 0 if unknown).")
    owned_by: str
    name: str
    family: str
    vocab_size: int
    tokenizer: str
    block_size: int | None
    parameters: int | None
    attention: bool


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class OpenAIError(BaseModel):
    message: str = Field(..., description="What is wrong and how to fix it, in one line.")
    type: str = Field(..., description="invalid_request_error (4xx) or server_error (503, 504).")
    param: str | None = Field(None, description="The request field at fault, when there is one.")
    code: str | None = Field(None, description="invalid_api_key, model_not_found, or null.")


class OpenAIErrorBody(BaseModel):
    """Every error of the OpenAI endpoints, in OpenAI's shape."""

    error: OpenAIError


STREAM_CONTENT: dict[str, Any] = {"text/event-stream": {"schema": {  # one server-sent event
    "type": "object", "required": ["data"],
    "description": "Server-sent events: one `data:` line of JSON per chunk (a Completion whose choice "
                   "holds the new text), an error object if the stream fails, then `data: [DONE]`.",
    "properties": {"data": {"type": "string"}}}}}
