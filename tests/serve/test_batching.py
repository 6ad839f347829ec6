"""Continuous batching in the server: concurrent generations of one model share one forward per step
and each gets the tokens it gets alone; a closed stream's row leaves at the next step; the batch holds
at most max_batch rows; --no-batching (and what the batch cannot take) keeps the one-request path."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from fastapi.testclient import TestClient

from arlm.decode.config import DecodingConfig
from arlm.serve import LoadedModel, ServeSettings, create_app
from arlm.serve.batcher import BatchedStream, Batcher
from arlm.serve.engine import TokenStream
from arlm.usecases.decoding import decode, encode_prompt

EOS = 2


class Gate:
    """Lets a batcher take a step only when allowed (:meth:`allow`), so that requests queue up behind
    it, and records the rows of the batch at every step in ``rows``."""

    def __init__(self, batcher: Batcher) -> None:
        self.permits = threading.Semaphore(0)
        self.rows: list[int] = []
        batch, one_step, choose = batcher.batch, batcher._one_step, batcher.batch.choose

        def gated() -> None:  # a whole step: rows leave and join, then choose and forward
            assert self.permits.acquire(timeout=30), "no step allowed within 30 s"
            one_step()

        def recorded():
            self.rows.append(len(batch))
            return choose()

        batcher._one_step, batch.choose = gated, recorded

    def allow(self, steps: int = 1000) -> None:
        self.permits.release(steps)


async def read_all(stream: BatchedStream) -> list[int]:
    """Every token id of ``stream``."""
    ids = []
    while True:
        got, event = await stream.next_event(30)
        assert got, "no token within 30 s"
        if event is None:
            return ids
        ids.append(event["id"])


def alone(lm: LoadedModel, prompt: str, config: DecodingConfig) -> list[int]:
    ids = encode_prompt(lm.model, lm.tokenizer, prompt, config.max_new_tokens)
    return decode(lm.model, lm.tokenizer, ids, config).rows()[0]


REQUESTS = [("the", DecodingConfig(max_new_tokens=12, seed=1, banned=(EOS,))),
            ("the dog", DecodingConfig(max_new_tokens=9, temperature=0.0)),
            ("a", DecodingConfig(max_new_tokens=15, seed=5, top_k=3, repetition_penalty=1.3)),
            ("the cat sat", DecodingConfig(max_new_tokens=7, seed=2, stop_strings=("t",)))]


@pytest.mark.parametrize("name", ["tf", "tri"])
def test_concurrent_generations_share_each_step_and_get_their_own_tokens(models, name):
    lm = models[name]

    async def main() -> list[list[int]]:
        batcher = Batcher(lm, max_batch=8)
        gate = Gate(batcher)
        try:
            streams = [batcher.open(encode_prompt(lm.model, lm.tokenizer, p, c.max_new_tokens), c)
                       for p, c in REQUESTS]  # the first one's prefill waits at the gate
            gate.allow()
            return await asyncio.gather(*(read_all(s) for s in streams)), gate.rows
        finally:
            batcher.close()

    results, rows = asyncio.run(main())
    assert max(rows) == len(REQUESTS)  # every stream in one forward
    for (prompt, config), tokens in zip(REQUESTS, results, strict=True):
        assert tokens == alone(lm, prompt, config)


def test_a_closed_stream_leaves_at_the_next_step_and_the_others_run_on(models):
    lm = models["tri"]
    config = DecodingConfig(max_new_tokens=40, seed=3, banned=(EOS,))
    ids = encode_prompt(lm.model, lm.tokenizer, "the", 40)

    async def main():
        batcher = Batcher(lm, max_batch=8)
        gate = Gate(batcher)
        try:
            leaving, staying = batcher.open(ids, config), batcher.open(ids, config)
            gate.allow(3)
            for _ in range(3):
                assert (await leaving.next_event(30))[0]
            leaving.close("disconnected")
            assert await leaving.next_event(30) == (True, None)  # no more events once closed
            gate.allow()
            return leaving, await read_all(staying), batcher, gate.rows
        finally:
            batcher.close()

    leaving, rest, batcher, rows = asyncio.run(main())
    assert 2 in rows[:3] and rows[3:] == [1] * (len(rows) - 3)  # it left at the step after its close
    assert len(leaving.tokens) == 3 and leaving.stop_reason == "disconnected"
    assert rest == alone(lm, "the", config)  # the other ran on to its end
    assert leaving.result()["num_tokens"] == 3 and not len(batcher.batch)


def test_the_batch_holds_at_most_max_batch_rows(models):
    lm = models["tri"]
    config = DecodingConfig(max_new_tokens=6, seed=0, banned=(EOS,))
    ids = encode_prompt(lm.model, lm.tokenizer, "the", 6)

    async def main():
        batcher = Batcher(lm, max_batch=2)
        gate = Gate(batcher)
        try:
            streams = [batcher.open(ids, config) for _ in range(5)]
            gate.allow()
            return await asyncio.gather(*(read_all(s) for s in streams)), gate.rows
        finally:
            batcher.close()

    results, rows = asyncio.run(main())
    assert max(rows) == 2 and all(len(r) == 6 for r in results)
    assert all(r == results[0] for r in results)  # one seed, one answer, batched or not


def test_http_answers_are_the_same_with_and_without_batching(models):
    body = {"model": "tf", "prompt": "the dog", "max_new_tokens": 10, "seed": 4, "banned": [EOS]}
    answers, streams = [], []
    for batching in (True, False):
        app = create_app(models, ServeSettings(batching=batching))
        with TestClient(app) as c:
            answers.append(c.post("/v1/generate", json=body).json())
            streams.append(c.post("/v1/generate", json={**body, "stream": True}).text)
            svc = app.state.service
            assert (svc.batchers["tf"] is not None) == batching  # the generations went through it
            assert type(svc.generation(models["tf"], [1, 5], DecodingConfig(num_samples=2))) is TokenStream
    assert answers[0] == answers[1] and streams[0] == streams[1]
    assert streams[0].count("event: token") == 10 and "event: done" in streams[0]
    config = DecodingConfig(max_new_tokens=10, seed=4, banned=(EOS,))
    assert [t["id"] for t in answers[0]["tokens"]] == alone(models["tf"], "the dog", config)


def completion_answers(client: TestClient, body: dict) -> tuple[list, list, dict]:
    """A completion asked whole and streamed -> (each choice's text, log-probs and finish reason, the
    same joined from the stream's chunks, the usage)."""
    whole = client.post("/v1/completions", json=body).json()
    chunks = client.post("/v1/completions", json={**body, "stream": True,
                                                   "stream_options": {"include_usage": True}}).text
    payloads = [json.loads(line[6:]) for line in chunks.splitlines()
                if line.startswith("data: {")]
    joined = [{"text": "", "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                        "text_offset": []}, "finish_reason": None}
              for _ in whole["choices"]]
    for p in payloads:
        for c in p["choices"]:
            into = joined[c["index"]]
            into["text"] += c["text"]
            for key, values in (c["logprobs"] or {}).items():
                into["logprobs"][key] += values
            into["finish_reason"] = c["finish_reason"] or into["finish_reason"]
    answers = [{k: c[k] for k in ("text", "logprobs", "finish_reason")} for c in whole["choices"]]
    assert payloads[-1]["usage"] == whole["usage"]
    return answers, joined, whole["usage"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tf", "tri"])
@pytest.mark.parametrize("knobs", [{"temperature": 0}, {"seed": 7, "top_k": 5}], ids=["greedy", "sampled"])
def test_completions_are_the_same_with_and_without_batching(models, name, knobs):
    body = {"model": name, "prompt": ["the dog", "a"], "max_tokens": 8, "n": 2, "logprobs": 2,
            "echo": True, "stop": ["cat", " on"], **knobs}
    results = []
    for batching in (True, False):
        app = create_app(models, ServeSettings(batching=batching))
        with TestClient(app) as c:
            answers, joined, usage = completion_answers(c, body)
            assert (app.state.service.batchers[name] is not None) == batching  # it went through the batch
        assert len(answers) == 4 and all(a["finish_reason"] in ("stop", "length") for a in answers)
        assert joined == answers  # the stream joins to the whole answer
        for a in answers:
            assert "".join(a["logprobs"]["tokens"]).startswith(a["text"])
        results.append((answers, usage))
    assert results[0] == results[1]
