"""The instrumentation seam: nothing of OpenTelemetry is imported or called when the extra is
absent or ``telemetry=False``; a bad value is refused naming the argument."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openai_multi_client import AsyncMultiClient, ConfigurationError

# A client that makes an attempt, in a process where opentelemetry cannot be imported.
_WITHOUT_OTEL = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from openai_multi_client import AsyncMultiClient

async def main():
    async with AsyncMultiClient(custom_api=lambda request: {"ok": 1}) as client:
        await client.request({"x": 1})
        client.close()
        results = [result async for result in client]
    assert [r.response for r in results] == [{"ok": 1}], results
    assert client._dispatcher._telemetry is None
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])
    assert loaded == [], loaded
    assert "openai_multi_client._otel" not in sys.modules
    print("ok")

asyncio.run(main())
"""


def test_without_the_extra_nothing_is_imported_and_requests_work() -> None:
    _run_script(_WITHOUT_OTEL)


async def test_telemetry_false_leaves_the_dispatcher_without_instrumentation() -> None:
    async with AsyncMultiClient(custom_api=lambda request: {}, telemetry=False) as client:
        assert client._dispatcher._telemetry is None
    async with AsyncMultiClient(custom_api=lambda request: {}) as client:
        assert client._dispatcher._telemetry is not None  # the dev extra has the API


def test_telemetry_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="telemetry must be True or False"):
        AsyncMultiClient(custom_api=lambda request: {}, telemetry="yes")  # type: ignore[arg-type]


# With the API but no SDK, attempts skip the work; an SDK configured later is used within a
# second (virtual time).
_SDK_LATER = """
import asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from openai_multi_client import AsyncMultiClient
from openai_multi_client.testing import FakeClock
import openai_multi_client._otel as otel

made = []
original = otel._Attempt.__init__
def counting(self, *args):
    made.append(1)
    original(self, *args)
otel._Attempt.__init__ = counting

async def main():
    clock = FakeClock()
    with clock.installed():
        async with AsyncMultiClient(custom_api=lambda request: {"ok": 1}, clock=clock) as client:
            await client.request({"n": 1})
            assert (await client.take(1))[0].response == {"ok": 1}
            assert made == [], made  # nothing configured: no span built
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            await client.request({"n": 2})  # within the second: not looked for yet
            assert (await client.take(1))[0].response == {"ok": 1}
            assert made == [], made
            await clock.sleep(otel.RECHECK_SECONDS)
            await client.request({"n": 3})
            client.close()
            assert [r.response async for r in client] == [{"ok": 1}]
    assert made == [1], made
    [span] = exporter.get_finished_spans()
    assert span.name == "custom_api", span.name
    print("ok")

asyncio.run(main())
"""


def test_without_an_sdk_no_span_is_built_until_one_is_configured() -> None:
    _run_script(_SDK_LATER)


def _run_script(source: str) -> None:
    """Run ``source`` in a fresh interpreter (its own imports); it prints ``ok`` when it holds."""
    done = subprocess.run(
        [sys.executable, "-c", source], check=False, capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
