"""The instrumentation seam: what the dispatcher tells an observer about each attempt.

The dispatcher holds an :class:`Instrumentation` or ``None``. ``None`` (the ``otel`` extra is
absent, or the client was made with ``telemetry=False``) costs one attribute test per attempt
and imports nothing. With ``opentelemetry-api`` installed, :func:`instrumentation` returns the
OpenTelemetry one (``_otel.py``), which sends spans and metrics to the globally configured
providers: a no-op until the user configures an SDK, as every OpenTelemetry instrumentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._api import Outcome
    from ._clock import Clock
    from ._errors import RequestError
    from ._limits.key import Key
    from ._request import Request


class AttemptTrace(Protocol):
    """One attempt being observed; exactly one of the three endings is called."""

    def first_chunk(self) -> object:
        """A streamed attempt received its first chunk."""
        ...

    def succeeded(self, outcome: Outcome, latency: float) -> None: ...

    def failed(self, error: RequestError, latency: float) -> None:
        """The attempt failed (its message already scrubbed of keys)."""
        ...

    def interrupted(self, latency: float) -> None:
        """The attempt was cancelled (shutdown) before it had an outcome."""
        ...


class Instrumentation(Protocol):
    def attempt(self, request: Request, key: Key, now: float) -> AttemptTrace | None:
        """Start observing an attempt of ``request`` with ``key`` (``request.attempt`` is set),
        starting at ``now`` (the client's clock); ``None`` when nothing would record it."""
        ...


_unavailable = False  # opentelemetry-api was looked for and is not installed


def instrumentation(
    enabled: bool, base_url: str | None, clock: Clock, capture_content: bool | None = None
) -> Instrumentation | None:
    """The instrumentation for a client whose default base URL is ``base_url`` (``None``: a
    ``custom_api`` client), or ``None`` when disabled or when ``opentelemetry-api`` is absent.
    ``capture_content``: record message content in spans (``None``: as the environment variable
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says, read now)."""
    global _unavailable  # noqa: PLW0603 - a process-wide "not installed", looked up once
    if not enabled or _unavailable:
        return None
    try:
        from ._otel import OpenTelemetry
    except ImportError:
        _unavailable = True
        return None
    from ._genai_content import capture_enabled

    return OpenTelemetry(base_url, clock, capture=capture_enabled(capture_content))
