""":class:`AsyncBatchClient`: the Batch API's steps as separate awaitable calls returning plain
records (so a journal can commit each before the next), and :meth:`~AsyncBatchClient.submit`,
which runs them all for one input and returns a :class:`~.job.BatchJob`."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import _json
from .._clock import Clock, LoopClock
from .._config import resolve_settings
from .._errors import ConfigurationError
from .._limits.key import Key
from .http import BatchHTTP
from .job import BatchJob
from .outcome import BatchResult, classify
from .records import CHUNK_KEY, RUN_KEY, BatchChunk, BatchInfo, UploadedFile
from .split import DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, split_file, split_lines

Source = str | Path | Iterable[Mapping[str, Any] | str | bytes]


def _resolve_key(
    api_key: str | Key | None, base_url: str | None, organization: str | None
) -> tuple[Key, str]:
    secret = api_key.secret if isinstance(api_key, Key) else api_key
    settings = resolve_settings(secret, base_url, organization)
    if isinstance(api_key, Key):
        return api_key, api_key.base_url or settings.base_url
    if settings.api_key:
        key = Key(settings.api_key, organization=settings.organization)
    else:
        key = Key.keyless()
    return key, settings.base_url


class AsyncBatchClient:
    """The OpenAI Batch API (half the online price) for one key, from async code.

    ``api_key``, ``base_url`` and ``organization`` are found as for the online clients (explicit,
    then the ``openai`` module, then ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``); a
    :class:`~openai_multi_client.Key` with ``azure=True`` uses Azure's layout. ``poll_interval``
    is the seconds between looks at a running batch; ``max_attempts`` bounds the batches one
    line may go through (a line that fails with 429/5xx or that an expired or cancelled batch
    never ran is sent again in a new batch). ``max_lines`` and ``max_bytes`` bound a batch file.
    ``workdir`` holds the batch files and downloads (default: a temporary directory removed by
    :meth:`aclose`). ``clock`` times the polling (tests inject a virtual one).
    """

    def __init__(
        self,
        api_key: str | Key | None = None,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        poll_interval: float = 60.0,
        max_attempts: int = 3,
        max_lines: int = DEFAULT_MAX_LINES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        workdir: str | Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
            raise ConfigurationError(f"poll_interval must be seconds > 0, got {poll_interval!r}")
        if not poll_interval > 0:
            raise ConfigurationError(f"poll_interval must be seconds > 0, got {poll_interval!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        self.key, self.base_url = _resolve_key(api_key, base_url, organization)
        self.poll_interval = float(poll_interval)
        self.max_attempts = max_attempts
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.clock: Clock = clock or LoopClock()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp("-omc"))
        self._http = BatchHTTP(self.key, self.base_url, self.clock)
        self._count = 0

    def __repr__(self) -> str:
        return f"AsyncBatchClient({self.base_url!r}, key={self.key.id!r})"

    async def aclose(self) -> None:
        """Close the connections (batches keep running at the server) and remove a temporary
        work directory."""
        await self._http.aclose()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self) -> AsyncBatchClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def new_directory(self, name: str) -> Path:
        self._count += 1
        path = self.workdir / f"{name}-{self._count:04d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---------------------------------------------------------------- the steps

    def split(self, source: Source, directory: str | Path | None = None) -> list[BatchChunk]:
        """Step 1: write the input into batch files (one endpoint and model each)."""
        folder = Path(directory) if directory is not None else self.new_directory("chunks")
        if isinstance(source, str | Path):
            return split_file(source, folder, max_lines=self.max_lines, max_bytes=self.max_bytes)
        return split_lines(source, folder, max_lines=self.max_lines, max_bytes=self.max_bytes)

    async def upload(self, chunk: BatchChunk) -> UploadedFile:
        """Step 2: upload one batch file (purpose ``batch``, streamed from disk)."""
        return await self._http.upload(chunk.path)

    async def create(
        self, file_id: str, endpoint: str, *, run_token: str | None = None, chunk: str = ""
    ) -> BatchInfo:
        """Step 3: create a batch; ``run_token`` and ``chunk`` go into its metadata so that
        :meth:`find` can adopt it after a crash."""
        metadata = {RUN_KEY: run_token, CHUNK_KEY: chunk} if run_token else None
        return await self._http.create(file_id, endpoint, metadata)

    async def retrieve(self, batch_id: str) -> BatchInfo:
        """Step 4 (repeated): the batch as it is now."""
        return await self._http.retrieve(batch_id)

    async def download(self, file_id: str, path: str | Path) -> Path:
        """Step 5: an output or error file, streamed to ``path``."""
        target = Path(path)
        await self._http.download(file_id, target)
        return target

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask for a batch to stop; it goes ``cancelling``, then ``cancelled`` with partial
        results."""
        return await self._http.cancel(batch_id)

    async def find(
        self, run_token: str, chunk: str | None = None, *, created_after: int | None = None
    ) -> list[BatchInfo]:
        """The batches whose metadata names ``run_token`` (and ``chunk``), newest first.

        The listing is read page by page, newest first; with ``created_after`` (Unix seconds,
        e.g. when the run began) it stops at the first batch created before then."""
        found: list[BatchInfo] = []
        after: str | None = None
        while True:
            page, more = await self._http.list_page(after)
            for info in page:
                created = info.raw.get("created_at")
                if (
                    isinstance(created, int)
                    and created_after is not None
                    and created < created_after
                ):
                    return found
                if info.metadata.get(RUN_KEY) == run_token and (
                    chunk is None or info.metadata.get(CHUNK_KEY) == chunk
                ):
                    found.append(info)
            if not more or not page:
                return found
            after = page[-1].id

    @staticmethod
    def read_results(path: str | Path, attempts: int = 1) -> Iterator[BatchResult]:
        """The classified lines of a downloaded output or error file."""
        with Path(path).open("rb") as file:
            for line in file:
                if line.strip():
                    yield classify(_json.loads(line), attempts)

    # ---------------------------------------------------------------- all of it

    async def submit(self, source: Source, *, run_token: str | None = None) -> BatchJob:
        """Split ``source`` (a JSONL path or an iterable of Batch-format lines), upload and
        create its batches; returns the job to :meth:`~.job.BatchJob.wait` on."""
        chunks = self.split(source)
        if not chunks:
            raise ConfigurationError("the input has no lines to submit")
        job = BatchJob(self, run_token or secrets.token_hex(8), self.new_directory("job"))
        await job.start(chunks)
        return job
