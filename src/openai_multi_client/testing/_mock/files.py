"""The mock's file store: uploaded input files and the output and error files batches write,
as OpenAI's ``FileObject`` describes them. Each file belongs to the organization of the key that
uploaded it (or of its batch): as at OpenAI, a key of another organization does not find it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Purposes an upload may name (the SDK's ``FilePurpose``).
UPLOAD_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
# Batch input files expire after 30 days unless the upload says otherwise.
_BATCH_FILE_SECONDS = 30 * 24 * 3600


@dataclass
class StoredFile:
    """One file: its object fields and its bytes."""

    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes
    expires_at: int | None = None
    owner: str = ""  # the organization whose keys see it

    def describe(self) -> dict[str, Any]:
        """The ``FileObject`` of this file."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


class FileStore:
    """Files by id; ``now`` gives Unix seconds (the server's clock, as epoch time)."""

    def __init__(self, id_prefix: str, now: Callable[[], float]) -> None:
        self._id_prefix = id_prefix[:16]
        self._now = now
        self._sequence = itertools.count(1)
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def add(
        self,
        filename: str,
        purpose: str,
        content: bytes,
        expires_seconds: int | None = None,
        owner: str = "",
    ) -> StoredFile:
        created = int(self._now())
        if expires_seconds is None and purpose == "batch":
            expires_seconds = _BATCH_FILE_SECONDS
        stored = StoredFile(
            id=f"file-{self._id_prefix}{next(self._sequence):08x}",
            filename=filename,
            purpose=purpose,
            created_at=created,
            content=content,
            expires_at=created + expires_seconds if expires_seconds is not None else None,
            owner=owner,
        )
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str, owner: str | None = None) -> StoredFile | None:
        """The file, if ``owner`` (``None``: any organization) sees it."""
        with self._lock:
            stored = self._files.get(file_id)
        return stored if stored is not None and owner in (None, stored.owner) else None

    def delete(self, file_id: str, owner: str | None = None) -> bool:
        with self._lock:
            stored = self._files.get(file_id)
            if stored is None or owner not in (None, stored.owner):
                return False
            del self._files[file_id]
            return True

    def listing(self, purpose: str | None, owner: str | None = None) -> list[StoredFile]:
        with self._lock:
            files = list(self._files.values())
        return [
            stored
            for stored in files
            if (purpose is None or stored.purpose == purpose) and owner in (None, stored.owner)
        ]
