"""Issue 16, item 3: key health per (key, model). A key that answers one model and is refused
another (401/403, a proxy whose upstream key for that model group is dead) is kept for the
models it answers; only the refused model's requests fail, with an error naming the model."""

from __future__ import annotations

import asyncio

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
from openai_multi_client._transport import HTTPRequest, HTTPResponse
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response

KEY = "sk-proxy-0123456789abcdef"


def proxy(request: HTTPRequest) -> HTTPResponse:
    """A proxy whose "dead" model group has a dead upstream key."""
    model = _json.loads(request.content)["model"]
    if model == "dead":
        message = f"litellm.AuthenticationError: Incorrect API key provided for {model}"
        return error_response(401, message, "401", type="auth_error")
    return json_response(200, {"choices": [{"index": 0, "message": {"content": model}}]})


async def run(models: list[str], **options: object) -> tuple[list[Result], AsyncMultiClient]:
    client = AsyncMultiClient(
        transport=MockTransport(proxy),
        api_key=KEY,
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


async def test_a_key_refused_before_it_answered_anything_is_retired(
    fake_clock: FakeClock,
) -> None:
    """Nothing shows the key works: it is dead, as before (every request fails at once)."""
    results, client = await run(["dead", "good", "good"], concurrency=1)
    assert isinstance(results[0].error, AuthenticationError)
    assert isinstance(results[-1].error, NoUsableKeyError)
    (key,) = client.statistics().keys.keys
    assert key.state == "retired"


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
