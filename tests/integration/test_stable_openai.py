"""The StableOpenai API for real: the seed README's example and the official SDK against the mock
server."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from openai_multi_client.testing import MockOpenAIServer
from stable_openai import KeyManager, stable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "stable_openai_seed_example.py")


def test_seed_example_runs_unchanged(mock_openai: MockOpenAIServer) -> None:
    done = subprocess.run(
        [sys.executable, EXAMPLE],
        cwd=ROOT,
        env={
            **os.environ,
            "OPENAI_BASE_URL": mock_openai.base_url,
            "PYTHONWARNINGS": "error",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Ten threads print at once, so two lines can run together: count the reports, not lines.
    successes = re.findall(r"Thread (\d+), Request (\d)/5: Success", done.stdout)
    assert sorted(successes, key=lambda s: (int(s[0]), int(s[1]))) == [
        (str(thread), str(request)) for thread in range(1, 11) for request in range(1, 6)
    ]
    assert "Failed" not in done.stdout
    assert "Traceback" not in done.stderr
    stats = mock_openai.stats
    assert stats.total_requests == 50
    # Both of the README's placeholder keys carried traffic; the `...` was skipped.
    assert set(stats.requests_by_key) == {"your_api_key1", "your_api_key2"}


def test_official_sdk_fails_over_from_dead_keys(
    mock_openai_factory: Callable[..., MockOpenAIServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openai_multi_client")
    server = mock_openai_factory(invalid_keys={"sk-invalid"}, no_quota_keys={"sk-broke"})
    manager = KeyManager(["sk-invalid", "sk-broke", "sk-good"], max_attempts=1)

    @stable
    def completions_with_backoff(
        model: str, messages: list[ChatCompletionMessageParam], api_key: str
    ) -> str:
        # max_retries=0: the SDK would retry insufficient_quota itself, wasting requests.
        with openai.OpenAI(api_key=api_key, base_url=server.base_url, max_retries=0) as client:
            response = client.chat.completions.create(model=model, messages=messages)
        return response.choices[0].message.content or ""

    def ask(number: int) -> str:
        return completions_with_backoff(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {number}"}]
        )

    assert "question 0" in ask(0)  # both dead keys are found out on this one call
    answers: dict[int, str] = {}
    threads = [
        threading.Thread(target=lambda n=n: answers.__setitem__(n, ask(n))) for n in range(1, 9)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == list(range(1, 9))
    assert all(f"question {n}" in answer for n, answer in answers.items())

    by_key = server.stats.requests_by_key
    assert by_key == {"sk-invalid": 1, "sk-broke": 1, "sk-good": 9}
    assert sorted(manager.retired_reasons()) == sorted(
        key.id for key in manager.keys if key.secret != "sk-good"
    )
    messages = [record.getMessage() for record in caplog.records]
    assert sum("retired" in message for message in messages) == 2
    assert not any("sk-invalid" in m or "sk-broke" in m for m in messages)


async def test_official_async_sdk_fails_over(
    mock_openai_factory: Callable[..., MockOpenAIServer],
) -> None:
    server = mock_openai_factory(no_quota_keys={"sk-broke"})
    KeyManager(["sk-broke", "sk-good"], max_attempts=1)

    @stable
    async def embed(text: str, api_key: str) -> int:
        async with openai.AsyncOpenAI(
            api_key=api_key, base_url=server.base_url, max_retries=0
        ) as client:
            response = await client.embeddings.create(model="text-embedding-3-small", input=text)
        return len(response.data[0].embedding)

    assert await embed("hello") > 0
    assert await embed("again") > 0
    assert server.stats.requests_by_key == {"sk-broke": 1, "sk-good": 2}
