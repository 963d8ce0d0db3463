"""An opt-in response cache (``omc run --cache FILE``): a request whose canonical body matches
one already answered reuses that answer instead of being sent.

The key is the SHA-256 of the endpoint path and the body serialised with sorted keys, so key
order and whitespace do not matter. Only successful answers (HTTP 2xx) are stored. The file is
SQLite in WAL mode, private (0600), and holds no API key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import _json
from ._private import private_sqlite


def cache_key(url: str, body: Any) -> str:
    """The canonical key of a request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a body with a lone surrogate still has a key (it fails later, when sent)
    return hashlib.sha256(f"{url}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """Answers by canonical request; ``get`` and ``put`` are cheap point queries."""

    def __init__(self, path: str) -> None:
        self._db = private_sqlite(path)
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, status INTEGER, "
                "request_id TEXT, body BLOB) WITHOUT ROWID"
            )
        except BaseException:
            self._db.close()
            raise
        self.path = path
        self.hits = 0

    def get(self, key: str) -> tuple[int, str | None, Any] | None:
        """``(status_code, request_id, body)`` of the stored answer, or ``None``."""
        row = self._db.execute(
            "SELECT status, request_id, body FROM answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        self.hits += 1
        return int(row[0]), row[1], _json.loads(bytes(row[2]))

    def put(self, key: str, status: int, request_id: str | None, body: Any) -> None:
        """Store an answer (2xx only), encoded as ``omc run``'s output is: non-finite numbers
        as strings, lone surrogates as U+FFFD; one that no JSON can hold is not stored."""
        if 200 <= status < 300:
            try:
                encoded = _json.dumps_record(body)
            except (TypeError, ValueError):
                return
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, status, request_id, body) VALUES (?,?,?,?)",
                (key, status, request_id, encoded),
            )

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"ResponseCache({self.path!r}, hits={self.hits})"
