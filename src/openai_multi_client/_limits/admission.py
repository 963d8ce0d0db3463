"""What the dispatcher sees of a key pool: the :class:`KeyAdmission` protocol.

A client asks for capacity (:meth:`KeyAdmission.reserve`: a reservation, the time worth asking
again at, or ``None`` when no key is left), hands it back with what the response said
(:meth:`~KeyAdmission.release`), and signals cool-downs, retirements and idleness. Everything
else stays behind the protocol: the pool's limiters, and, with shared limits, the
:class:`~openai_multi_client._limits.keeper.LeaseKeeper` that renews this client's leases.

:func:`admit` makes one client's admission onto a :class:`KeyPool`. A pool may be shared by
several clients, each on its own event loop or thread: each admission listens to the pool and
wakes its client's dispatcher when another client's release gives capacity back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from .._clock import Clock
from .._errors import ConfigurationError
from .health import Scope
from .keeper import LeaseKeeper, SharedLimitsStatistics
from .key import Key
from .lease import LimitsBackend
from .pool import KeyPool, Listener, PoolStatistics, Reservation
from .redis import RedisLimits


class KeyAdmission(Protocol):
    """One client's admission onto its keys (all methods but :meth:`start` and
    :meth:`aclose` are synchronous and quick; ``now`` is the client's clock time)."""

    async def start(self, wake: Callable[[], None]) -> None:
        """Before the first reserve, on the client's event loop: ``wake()`` is called there
        whenever capacity may have come back; with shared limits, take the first leases."""
        ...

    async def aclose(self) -> None:
        """Stop listening; with shared limits, give the leases back. Idempotent."""
        ...

    def reserve(
        self, tokens: int, now: float, model: str | None = None
    ) -> Reservation | float | None:
        """A reservation; or the time worth trying again at (``inf``: after a wake-up); or
        ``None`` when every key is retired or refused ``model``."""
        ...

    def release(
        self,
        reservation: Reservation,
        now: float,
        *,
        headers: Mapping[str, str] | None = None,
        used_tokens: int | None = None,
        overloaded: bool = False,
        failed: bool = False,
    ) -> None: ...

    def cool_down(self, key: Key, seconds: float, now: float) -> None:
        """A 429 said ``key`` is over its limit: rest it for ``seconds``."""
        ...

    def retire(self, key: Key, reason: str) -> None:
        """``key`` is dead for this run (``reason`` is redacted)."""
        ...

    def refuse(self, key: Key, model: str, reason: str, scope: Scope = Scope.KEY) -> bool:
        """A 401/403 (or exhausted quota) for ``model``: True if ``key`` is kept for other
        models (:meth:`KeyPool.refuse`), False if its answers show it is dead (retire it)."""
        ...

    def refusals(self, model: str) -> dict[str, str]: ...

    def idle(self) -> None:
        """The client has nothing left to send."""
        ...

    def drained(self) -> None:
        """The client has nothing to send for now (the next :meth:`reserve` says it has)."""
        ...

    @property
    def exhausted(self) -> bool: ...

    def largest_cost(self) -> float: ...

    def retired_reasons(self) -> dict[str, str]: ...

    def redact(self, text: str) -> str: ...

    def statistics(self, now: float) -> PoolStatistics: ...

    def shared_statistics(self) -> SharedLimitsStatistics | None: ...


def loop_listener(wake: Callable[[], None]) -> Listener:
    """A pool listener that runs ``wake()`` on the running event loop: at once when the pool
    changes on the loop's own thread, else scheduled there thread-safely."""
    loop = asyncio.get_running_loop()
    thread = threading.get_ident()

    def listener() -> None:
        if threading.get_ident() == thread:
            wake()
            return
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
            loop.call_soon_threadsafe(wake)

    return listener


def limits_backend(shared_limits: str | LimitsBackend) -> LimitsBackend:
    if isinstance(shared_limits, str):
        return RedisLimits(shared_limits)
    if not isinstance(shared_limits, LimitsBackend):
        raise ConfigurationError(
            "shared_limits must be a Redis URL, a RedisLimits or an InMemoryLimits, got "
            f"{type(shared_limits).__name__}"
        )
    return shared_limits


def admit(
    pool: KeyPool, clock: Clock, shared_limits: str | LimitsBackend | None = None
) -> KeyAdmission:
    """One client's admission onto ``pool``; with ``shared_limits`` (a Redis URL, made and
    closed here, or a backend the caller closes), it leases its shares of the keys."""
    return _PoolAdmission(pool, clock, shared_limits)


class _PoolAdmission:
    def __init__(
        self, pool: KeyPool, clock: Clock, shared_limits: str | LimitsBackend | None
    ) -> None:
        self._pool = pool
        self._clock = clock
        # Called for every request: the pool's own methods, without a call in between.
        self.release = pool.release
        self.largest_cost = pool.largest_cost
        self._owned: LimitsBackend | None = None  # made here from a URL: closed here
        self._keeper: LeaseKeeper | None = None
        if shared_limits is not None:
            backend = limits_backend(shared_limits)
            if isinstance(shared_limits, str):
                self._owned = backend
            self._keeper = LeaseKeeper(pool, backend, clock)
        self._keeper_started = False
        self._drained = False  # told the keeper there is nothing to send
        self._renewals: asyncio.Task[None] | None = None
        self._listener: Listener | None = None
        self._wake: Callable[[], None] | None = None
        self._broken: BaseException | None = None  # the keeper's renewals died of a bug
        self._closed = False

    async def start(self, wake: Callable[[], None]) -> None:
        if self._listener is None:
            self._wake = wake
            self._listener = loop_listener(wake)
            self._pool.add_listener(self._listener)
        keeper = self._keeper
        if keeper is not None and not self._keeper_started:
            self._keeper_started = True  # stop() gives back whatever start() took
            await keeper.start()
            renewals = asyncio.get_running_loop().create_task(keeper.run(), name="omc-leases")
            renewals.add_done_callback(self._renewals_done)
            self._renewals = renewals

    def _renewals_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._broken = task.exception()
            if self._wake is not None:
                self._wake()  # the dispatcher hears of it at its next reserve

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._pool.remove_listener(self._listener)
        try:
            if self._keeper is not None:
                self._keeper.close()
                if self._renewals is not None:
                    self._renewals.cancel()
                    await asyncio.gather(self._renewals, return_exceptions=True)
                if self._keeper_started:
                    await self._keeper.stop()
        finally:
            if self._owned is not None:
                await self._owned.aclose()

    def reserve(
        self, tokens: int, now: float, model: str | None = None
    ) -> Reservation | float | None:
        if self._broken is not None:
            raise self._broken
        if self._drained:  # work came: with shared limits, take shares again if given up
            self._drained = False
            assert self._keeper is not None
            self._keeper.busy()
        return self._pool.reserve(tokens, now, model)

    def cool_down(self, key: Key, seconds: float, now: float) -> None:
        self._pool.cool_down(key, now + seconds)
        if self._keeper is not None:
            self._keeper.cooled_down(key.id, seconds)

    def retire(self, key: Key, reason: str) -> None:
        self._pool.retire(key, reason)
        if self._keeper is not None:
            self._keeper.retired(key.id, reason)

    def refuse(self, key: Key, model: str, reason: str, scope: Scope = Scope.KEY) -> bool:
        return self._pool.refuse(key, model, reason, scope)

    def refusals(self, model: str) -> dict[str, str]:
        return self._pool.refusals(model)

    def idle(self) -> None:
        if self._keeper is not None:
            self._keeper.idle()  # its shares go to the clients with work

    def drained(self) -> None:
        if self._keeper is not None and not self._drained:
            self._drained = True
            self._keeper.drained()

    @property
    def exhausted(self) -> bool:
        return self._pool.exhausted

    def retired_reasons(self) -> dict[str, str]:
        return self._pool.retired_reasons()

    def redact(self, text: str) -> str:
        return self._pool.redact(text)

    def statistics(self, now: float) -> PoolStatistics:
        return self._pool.statistics(now)

    def shared_statistics(self) -> SharedLimitsStatistics | None:
        return None if self._keeper is None else self._keeper.statistics()

    def __repr__(self) -> str:
        return f"{self._pool!r}" if self._keeper is None else f"{self._pool!r} ({self._keeper!r})"
