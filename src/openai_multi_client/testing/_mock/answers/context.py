"""What an answer is built from besides the request body."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import Plan


@dataclass(frozen=True)
class Context:
    """The answer's model, the request's :class:`~..validation.Plan`, its sequence number,
    the server's id prefix and URL, and the embedding size it was configured with."""

    model: str
    plan: Plan
    sequence: int
    id_prefix: str
    url: str
    embedding_dimensions: int | None = None

    def object_id(self, prefix: str) -> str:
        """An id unique to this server and request, as ``chatcmpl-...``, ``resp_...``."""
        return f"{prefix}{self.id_prefix[:16]}{self.sequence:08x}"
