"""The one-call form: request bodies in, results out.

::

    for result in run_requests(bodies, endpoint="chats", data_template={"model": "gpt-4o-mini"}):
        ...

    async for result in arun_requests(bodies, endpoint="embeddings"):
        ...

Results come in input order unless ``ordered=False``. Input is consumed lazily, so a generator
of a million bodies never sits in memory. Leaving the loop early cancels what is unfinished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._engine import AsyncMultiClient
from ._options import RunKeywords
from ._request import Result
from ._sync import OpenAIMultiClient, OpenAIMultiOrderedClient

if TYPE_CHECKING:
    from typing_extensions import Unpack


def run_requests(
    bodies: Iterable[Mapping[str, Any]],
    *,
    endpoint: str = "chats",
    ordered: bool = True,
    **options: Unpack[RunKeywords],
) -> Iterator[Result]:
    """Send every body in ``bodies`` to ``endpoint``; yield one :class:`Result` each.

    ``options`` are those of :class:`OpenAIMultiClient` (``concurrency``, ``api_key``,
    ``data_template``, ...).
    """
    cls = OpenAIMultiOrderedClient if ordered else OpenAIMultiClient
    client = cls(endpoint=endpoint, **options)  # the same options as the clients (_options)

    def feed() -> None:
        for body in bodies:
            client.request(body)

    with client:
        client.run_request_function(feed)
        yield from client


async def arun_requests(
    bodies: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    endpoint: str = "chats",
    ordered: bool = True,
    **options: Unpack[RunKeywords],
) -> AsyncIterator[Result]:
    """The async twin of :func:`run_requests`; ``bodies`` may be an async iterable."""
    async with AsyncMultiClient(endpoint=endpoint, ordered=ordered, **options) as client:

        async def feed() -> None:
            try:
                if isinstance(bodies, AsyncIterable):
                    async for body in bodies:
                        await client.request(body)
                else:
                    for body in bodies:
                        await client.request(body)
            except Exception as exc:
                client.close(exc)
            else:
                client.close()

        feeder = asyncio.get_running_loop().create_task(feed(), name="omc-feeder")
        try:
            async for result in client:
                yield result
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
