"""The engine and ``@stable`` take the same retry decision (``_retry.decide``) for the same
failures.

Each scenario is a sequence of answers from the server, then success. The engine meets them
over a MockTransport, a ``@stable`` function raises them as errors; both must make the same
number of calls and end the same way.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    BadRequestError,
    HTTPRequest,
    HTTPResponse,
    InternalServerError,
    KeyManager,
    RequestError,
    stable,
)
from openai_multi_client._errors import status_error
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response

KEYS = ["sk-a-0123456789abcdef", "sk-b-0123456789abcdef"]

# name -> (status, code, headers)
ANSWERS: dict[str, tuple[int, str | None, dict[str, str]]] = {
    "429": (429, "rate_limit_exceeded", {"retry-after-ms": "20"}),
    "500": (500, None, {}),
    "503": (503, None, {}),
    "401": (401, "invalid_api_key", {}),
    "400": (400, None, {}),
}

SCENARIOS = [
    # answers, max attempts, expected calls, expected error (None: success)
    pytest.param(["429"] * 12, 3, 13, None, id="rate-limited-often-but-never-failed"),
    pytest.param(["500"] * 5, 3, 3, InternalServerError, id="attempts-spent"),
    pytest.param(["401", "500"], 2, 3, None, id="retired-key-costs-no-attempt"),
    pytest.param(["400"], 3, 1, BadRequestError, id="not-retryable"),
    pytest.param(["429", "429", "429", "503", "503"], 3, 6, None, id="pacing-then-failures"),
    pytest.param(["429", "503", "429", "503", "500"], 3, 5, InternalServerError, id="mixed"),
]


def _error(name: str) -> RequestError:
    status, code, headers = ANSWERS[name]
    body = {"error": {"message": name, "type": "t", "param": None, "code": code}}
    return status_error(status, body, headers)


def _success() -> HTTPResponse:
    return json_response(200, {"choices": [], "usage": {"total_tokens": 1}})


async def _engine_run(answers: list[str], max_attempts: int) -> tuple[int, type | None]:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        if calls > len(answers):
            return _success()
        status, code, headers = ANSWERS[answers[calls - 1]]
        return error_response(status, answers[calls - 1], code, headers=headers)

    async with AsyncMultiClient(
        max_retries=max_attempts,
        retry_multiplier=0.01,
        endpoint="chats",
        api_key=KEYS,
        base_url="http://mock.invalid/v1",
        transport=MockTransport(handler),
        rng=random.Random(0),
    ) as client:
        await client.request({"messages": []})
        client.close()
        (result,) = [result async for result in client]
    return calls, type(result.error) if result.failed else None


def _stable_run(answers: list[str], max_attempts: int) -> tuple[int, type | None]:
    calls = 0
    manager = KeyManager(
        KEYS,
        max_attempts=max_attempts,
        retry_multiplier=0.01,
        clock=FakeClock(),
        rng=random.Random(0),
    )

    @stable(manager=manager)
    def ask(api_key: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > len(answers):
            return {"choices": []}
        raise _error(answers[calls - 1])

    try:
        ask()
    except RequestError as exc:
        return calls, type(exc)
    return calls, None


@pytest.mark.parametrize(("answers", "max_attempts", "calls", "error"), SCENARIOS)
async def test_the_engine_and_stable_decide_alike(
    fake_clock: FakeClock,
    answers: list[str],
    max_attempts: int,
    calls: int,
    error: type | None,
) -> None:
    engine = await _engine_run(answers, max_attempts)
    decorated = _stable_run(answers, max_attempts)
    assert engine == decorated == (calls, error)
