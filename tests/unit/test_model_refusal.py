"""Issue 16, item 3: key health per (key, model). A key that answers one model and is refused
another (401/403, a proxy whose upstream key for that model group is dead) is kept for the
models it answers; only the refused model's requests fail, with an error naming the model."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable

from openai_multi_client import (
    AsyncMultiClient,
    AuthenticationError,
    Key,
    KeyPool,
    ModelRefusedError,
    NoUsableKeyError,
    Result,
    _json,
)
from openai_multi_client._limits import Reservation
from openai_multi_client._limits.health import Scope
from openai_multi_client._transport import HTTPRequest, HTTPResponse
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response

KEY = "sk-proxy-0123456789abcdef"

Handler = Callable[[HTTPRequest], HTTPResponse]


def proxy(request: HTTPRequest) -> HTTPResponse:
    """A proxy whose "dead" model group has a dead upstream key."""
    model = _json.loads(request.content)["model"]
    if model == "dead":
        message = f"litellm.AuthenticationError: Incorrect API key provided for {model}"
        return error_response(401, message, "401", type="auth_error")
    return json_response(200, {"choices": [{"index": 0, "message": {"content": model}}]})


async def run(
    models: list[str], handler: Handler = proxy, **options: object
) -> tuple[list[Result], AsyncMultiClient]:
    options.setdefault("api_key", KEY)
    client = AsyncMultiClient(
        transport=MockTransport(handler),
        endpoint="chats",
        base_url="http://mock.invalid/v1",
        **options,  # type: ignore[arg-type]
    )

    async def produce() -> None:
        for model in models:
            await client.request({"model": model, "messages": [{"role": "user", "content": "x"}]})
        client.close()

    async with client:
        producer = asyncio.ensure_future(produce())
        results = [result async for result in client]
        await producer
    return sorted(results, key=lambda result: result.index), client


async def test_a_model_refused_on_a_key_that_answers_others_fails_alone(
    fake_clock: FakeClock,
) -> None:
    models = ["dead" if n % 4 == 3 else "good" for n in range(40)]
    results, client = await run(models, concurrency=8)
    good = [r for r, m in zip(results, models, strict=True) if m == "good"]
    dead = [r for r, m in zip(results, models, strict=True) if m == "dead"]
    assert [r.error for r in good] == [None] * 30
    assert all(isinstance(r.error, ModelRefusedError) for r in dead), [r.error for r in dead]
    message = str(dead[0].error)
    assert "'dead'" in message
    assert Key(KEY).id in message
    assert KEY not in message
    (key,) = client.statistics().keys.keys
    assert key.state == "active"


async def test_a_model_refused_error_names_the_model_and_refusals_and_pickles(
    fake_clock: FakeClock,
) -> None:
    """``omc run`` reads the model and the server's words from the error; a Ray worker's
    result crosses a process boundary pickled."""
    results, _ = await run(["good", "dead", "dead"], concurrency=1)
    error = results[2].error
    assert isinstance(error, ModelRefusedError)
    words = "litellm.AuthenticationError: Incorrect API key provided for dead"
    assert error.model == "dead"
    assert [(key, words in why) for key, why in error.refusals.items()] == [(Key(KEY).id, True)]
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.model, dict(copy.refusals), str(copy)) == (
        "dead",
        dict(error.refusals),
        str(error),
    )


async def test_a_models_refusal_that_arrives_first_refuses_that_model_only(
    fake_clock: FakeClock,
) -> None:
    """The proxy's 401 for "dead" is the key's very first answer: nothing yet shows the key
    works, but nothing shows it dead either. Only "dead" is refused; "good" goes on."""
    models = ["dead", "good", "dead", "good", "good"]
    results, client = await run(models, concurrency=1)
    assert [type(r.error).__name__ if r.error else None for r in results] == [
        "ModelRefusedError",
        None,
        "ModelRefusedError",
        None,
        None,
    ]
    message = str(results[0].error)
    assert "'dead'" in message
    assert Key(KEY).id in message
    assert KEY not in message
    assert "Incorrect API key provided" in message  # the server's own words
    (key,) = client.statistics().keys.keys
    assert key.state == "active"
    assert key.requests == 4  # the second "dead" line was never sent


def unauthorized(request: HTTPRequest) -> HTTPResponse:
    """A server that refuses the key, saying no more than that (vLLM's ``--api-key`` shape)."""
    return json_response(401, {"error": "Unauthorized"})


async def test_a_key_refused_two_models_before_answering_any_is_retired(
    fake_clock: FakeClock,
) -> None:
    """Two models refused, none answered: the key is dead, as before (the rest fail at once)."""
    results, client = await run(["a", "b", "c", "a"], concurrency=1, handler=unauthorized)
    assert isinstance(results[0].error, ModelRefusedError)
    assert isinstance(results[1].error, AuthenticationError)
    assert all(isinstance(r.error, NoUsableKeyError) for r in results[2:])
    (key,) = client.statistics().keys.keys
    assert key.state == "retired"
    assert key.requests == 2


async def test_openais_invalid_api_key_retires_the_key_at_once(fake_clock: FakeClock) -> None:
    """OpenAI's code ``invalid_api_key`` says the key does not exist (a typo): no second model
    is needed to show it, the run ends as it always did."""

    def openai(request: HTTPRequest) -> HTTPResponse:
        return error_response(
            401, "Incorrect API key provided: sk-pro***cdef.", "invalid_api_key", "auth_error"
        )

    results, client = await run(["a", "b", "b"], concurrency=1, handler=openai)
    assert isinstance(results[0].error, AuthenticationError)
    assert all(isinstance(r.error, NoUsableKeyError) for r in results[1:])
    assert client.statistics().keys.keys[0].state == "retired"


async def test_a_model_refused_on_one_key_goes_to_the_others(fake_clock: FakeClock) -> None:
    """A pool of keys: the first key's upstream for "dead" is dead (its first answer), the
    second key's is not. Every "dead" request is answered by the second key."""
    first, second = "sk-first-0123456789abcdef", "sk-second-0123456789abcdef"

    def per_key(request: HTTPRequest) -> HTTPResponse:
        if request.headers["Authorization"] == f"Bearer {first}":
            return proxy(request)
        return json_response(200, {"choices": [{"index": 0, "message": {"content": "ok"}}]})

    models = ["dead"] * 6 + ["good"] * 4
    results, client = await run(models, concurrency=1, handler=per_key, api_key=[first, second])
    assert [r.error for r in results] == [None] * 10
    assert {r.key for r in results[1:6]} == {Key(second).id}
    states = {k.key: k.state for k in client.statistics().keys.keys}
    assert states == {Key(first).id: "active", Key(second).id: "active"}


def test_the_pool_refuses_a_model_only_on_evidence() -> None:
    first, second = Key("sk-first-0123456789"), Key("sk-second-0123456789")
    pool = KeyPool([first, second])
    assert not pool.refuse(first, "dead", "401")  # it answered nothing yet
    reservation = pool.reserve(0, 0.0, "good")
    assert isinstance(reservation, Reservation)
    pool.release(reservation, 0.0)
    assert pool.refuse(reservation.key, "dead", "401 for sk-first-0123456789")
    assert pool.refusals("dead") == {reservation.key.id: f"401 for {reservation.key.id}"}
    other = second if reservation.key is first else first
    for _ in range(3):  # "dead" goes to the other key only; other models to both
        got = pool.reserve(0, 1.0, "dead")
        assert isinstance(got, Reservation)
        assert got.key is other
        pool.release(got, 1.0, failed=True)
    pool.retire(other, "401")
    assert pool.reserve(0, 2.0, "dead") is None
    assert not pool.exhausted
    assert isinstance(pool.reserve(0, 2.0, "good"), Reservation)


def test_the_pool_weighs_a_refusal_by_what_the_answers_show() -> None:
    key, other = Key("sk-first-0123456789"), Key("sk-second-0123456789")
    pool = KeyPool([key, other])
    # A 401 that says nothing more, as the key's first answer: only that model is refused.
    assert pool.refuse(key, "m1", "401", Scope.UNSURE)
    assert pool.refusals("m1") == {key.id: "401"}
    for _ in range(3):
        got = pool.reserve(0, 0.0, "m1")
        assert isinstance(got, Reservation)
        assert got.key is other
        pool.release(got, 0.0, failed=True)
    # A second model refused while the key answered none: it is dead.
    assert not pool.refuse(key, "m2", "401", Scope.UNSURE)
    # An answer that says the key is invalid (or out of quota): dead at once.
    assert not pool.refuse(other, "m1", "401 invalid_api_key", Scope.KEY)
    assert pool.refusals("m2") == {}


def test_a_proxys_report_on_one_model_never_retires_the_key() -> None:
    key = Key("sk-first-0123456789")
    pool = KeyPool([key])
    assert all(pool.refuse(key, f"m{n}", "litellm 401", Scope.MODEL) for n in range(5))
    assert isinstance(pool.reserve(0, 0.0, "m9"), Reservation)
    assert pool.reserve(0, 0.0, "m3") is None


def test_a_key_refused_a_model_it_answered_before_is_retired() -> None:
    """Its access was revoked during the run; no other model shows it works."""
    key = Key("sk-first-0123456789")
    pool = KeyPool([key])
    reservation = pool.reserve(0, 0.0, "m")
    assert isinstance(reservation, Reservation)
    pool.release(reservation, 0.0)
    assert not pool.refuse(key, "m", "401", Scope.UNSURE)
    # After another model's answer, a refusal is that model's only (even "invalid key").
    reservation = pool.reserve(0, 0.0, "n")
    assert isinstance(reservation, Reservation)
    pool.release(reservation, 0.0)
    assert pool.refuse(key, "m", "401", Scope.KEY)
