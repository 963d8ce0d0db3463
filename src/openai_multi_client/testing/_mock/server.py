"""A mock OpenAI API server on 127.0.0.1, for tests, benchmarks and demonstrations.

No real API is needed to exercise a client end to end: :class:`MockOpenAIServer` speaks the
OpenAI REST API over real HTTP (aiohttp.web) and imitates the parts that matter to a bulk client:

* the endpoints ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
  ``/v1/moderations``, ``/v1/responses``, ``/v1/images/generations``, ``GET /v1/models`` and
  ``GET /v1/models/{model}``, plus Azure's ``/openai/...`` and
  ``/openai/deployments/{deployment}/...`` forms, with response bodies shaped like OpenAI's and
  deterministic content: tool calls when ``tool_choice`` requires one, JSON conforming to a
  ``response_format`` / ``text.format`` schema, logprobs when asked for (see ``answers``);
* authentication (``Authorization: Bearer KEY`` or Azure's ``api-key``), invalid keys (401) and
  keys without quota (429 ``insufficient_quota``);
* per-key rate limits enforced the way OpenAI enforces them (requests and tokens per minute,
  about one second of burst, failed requests counted too), the six ``x-ratelimit-*`` headers and
  ``retry-after-ms`` / ``retry-after`` on 429s;
* latency and a seeded plan of faults (5xx, connection resets, hangs, truncated bodies);
* the Files and Batches APIs (uploads, batches that validate, run, finalize, fail, expire
  and cancel on the server's clock; see :mod:`.batches`);
* accounting that tests read: status counts, and how often each distinct request body was
  answered (to prove that a client never pays twice for the same request).


It runs either in the current event loop (``await server.start()`` / ``async with server``) or in
a daemon thread with its own loop (``server.start_in_thread()`` / ``with server``).

The request flow is in :mod:`.handler`; configuration in :mod:`.options`, limits in
:mod:`.limits`, counters in :mod:`.accounting`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from ..._clock import Clock, LoopClock
from .accounting import Ledger, ServerStats
from .background import LoopThread
from .batch_options import BatchOptions
from .handler import RequestHandler
from .options import Faults, KeyLimits, ServerOptions
from .waits import Waits

logger = logging.getLogger(__name__)

__all__ = ["MockOpenAIServer"]

_UNLIMITED: Final = KeyLimits()  # frozen, so safe to share


class MockOpenAIServer:
    """A local imitation of the OpenAI API; see the module docstring for what it imitates.

    Keys: with ``keys=None`` any non-empty key is valid and limited by ``default_limits``; with a
    mapping, only its keys are valid (each with its own limits), others get 401
    ``invalid_api_key`` (sent in Azure's ``api-key`` header: Azure's 401, "Access denied due to
    invalid subscription key ..."). ``invalid_keys`` always get 401, ``no_quota_keys`` 429
    ``insufficient_quota``. With ``require_key=False`` a request without a key is accepted as key
    ``""`` (with ``default_limits``).

    ``latency`` is fixed seconds or a ``(min, max)`` range drawn uniformly; latency and
    ``faults`` draw from one ``random.Random(seed)``, so a run is reproducible. ``clock``
    (a :class:`~openai_multi_client.Clock`; default: the event loop's) drives the rate limiters;
    tests inject a :class:`~openai_multi_client.testing.FakeClock`.

    Rate-limited (429) requests count against the limits, as at OpenAI: a client that keeps
    sending faster than a key's rate gets nothing through. ``count_rejected=False`` makes a
    more lenient server that charges only admitted requests.

    Embeddings have the model's real size (1536 for ``text-embedding-3-small`` and
    ``text-embedding-ada-002``, 3072 for ``text-embedding-3-large``, 1536 for other models), or
    ``embedding_dimensions`` for every model when given; a request's ``dimensions`` wins.

    The Files and Batches APIs (``/v1/files``, ``/v1/batches``) are served too, with batches
    moving through their statuses on ``clock`` as ``batches`` (a :class:`BatchOptions`) says:
    validation, processing speed, expiry, the enqueued-token limit, line faults.

    The arguments are validated at once (:class:`ValueError` naming the argument) into
    :attr:`options`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Mapping[str, KeyLimits] | None = None,
        default_limits: KeyLimits = _UNLIMITED,
        invalid_keys: Collection[str] = (),
        no_quota_keys: Collection[str] = (),
        require_key: bool = True,
        latency: float | tuple[float, float] = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        retry_after: bool = True,
        rate_limit_headers: bool = True,
        embedding_dimensions: int | None = None,
        clock: Clock | None = None,
        count_rejected: bool = True,
        batches: BatchOptions | None = None,
    ) -> None:
        self.options = ServerOptions(
            host=host,
            port=port,
            keys=keys,
            default_limits=default_limits,
            invalid_keys=invalid_keys,
            no_quota_keys=no_quota_keys,
            require_key=require_key,
            latency=latency,
            faults=faults,
            seed=seed,
            retry_after=retry_after,
            rate_limit_headers=rate_limit_headers,
            embedding_dimensions=embedding_dimensions,
            clock=LoopClock() if clock is None else clock,
            count_rejected=count_rejected,
        )
        self.host = host
        self.port = port
        self._ledger = Ledger()
        self._waits = Waits()
        if batches is not None and not isinstance(batches, BatchOptions):
            raise ValueError(f"batches must be a BatchOptions or None, not {batches!r}")
        self.batch_options = batches or BatchOptions()
        self._handler = RequestHandler(
            self.options,
            ledger=self._ledger,
            waits=self._waits,
            url=lambda: self.url,
            batch_options=self.batch_options,
        )
        self._runner: web.AppRunner | None = None
        self._background = LoopThread(f"mock-openai-{id(self):x}")

    # ---------------------------------------------------------------- addresses and repr

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server (a wildcard host shows as loopback)."""
        if self.port == 0:
            raise RuntimeError("the mock server has not been started, so it has no port yet")
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client: ``http://HOST:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._runner is not None

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else "not started"
        return f"<MockOpenAIServer {where}{' running' if self.running else ''}>"

    # ---------------------------------------------------------------- lifecycle: current loop

    async def start(self) -> None:
        """Start serving in the running event loop; sets ``port``, ``url`` and ``base_url``."""
        if self._runner is not None:
            raise RuntimeError("the mock server is already running")
        self._waits.open()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._handler.add_routes(app.router)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.options.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        logger.info("mock OpenAI server listening at %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving: requests in latency or hanging are dropped at once, without an
        answer; connections are closed. Does nothing when not running."""
        runner = self._runner
        if runner is None:
            return
        if self._background.alive and not self._background.is_current():
            raise RuntimeError("this server runs in its own thread: stop it with stop_in_thread()")
        self._waits.close()
        try:
            await runner.cleanup()
        finally:
            self._runner = None
            logger.info("mock OpenAI server at port %d stopped", self.port)

    async def __aenter__(self) -> MockOpenAIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---------------------------------------------------------------- lifecycle: own thread

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Start serving in a daemon thread with its own event loop; returns once it listens.

        For synchronous code, and for tests whose event loop must not host the server.
        """
        if self._runner is not None or self._background.alive:
            raise RuntimeError("the mock server is already running")
        self._background.start(self.start, timeout)

    def stop_in_thread(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        self._background.stop(self.stop, timeout)

    def __enter__(self) -> MockOpenAIServer:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_in_thread()

    # ---------------------------------------------------------------- accounting

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters (safe to read from any thread)."""
        return self._ledger.stats()

    @property
    def answer_counts(self) -> dict[str, int]:
        """A snapshot: :func:`~.accounting.canonical_hash` of a request body -> how many
        complete 200 answers to it were sent.

        An answer counts once its whole body was handed to the connection without error (it is
        counted just before, so a client holding the answer always sees it counted); a
        truncated body (the ``malformed`` fault) or an answer to a client that had already
        disconnected does not count. Errors and faults never count.
        """
        return self._ledger.answer_counts()

    def times_answered(self, body: Mapping[str, Any]) -> int:
        """How many complete 200 answers to this request body were sent (key order does not
        matter; see :attr:`answer_counts`)."""
        return self._ledger.times_answered(body)

    def answered_more_than_once(self) -> int:
        """How many distinct request bodies were answered two or more times."""
        return self._ledger.answered_more_than_once()

    def reset_stats(self) -> None:
        """Forget all counters and answer counts (rate-limit state is kept)."""
        self._ledger.reset()
