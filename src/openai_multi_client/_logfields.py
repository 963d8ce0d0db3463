"""The structured fields the library's log records carry (``logging``'s ``extra``).

Every record of the ``openai_multi_client`` logger that is about something in particular says
what in these fields, for log shippers and for ``omc run --log-format json``:

* ``event``: what happened, a short snake_case name (``retry``, ``request_failed``,
  ``key_cooling``, ``key_retired``, ``key_limit_lowered``, ...);
* ``custom_id``: the request's ``metadata["custom_id"]`` when it has one (``omc run`` sets it
  from the input line); ``request_index``: its submission number; ``attempt``;
* ``key_id``: the redacted id of the key (never the key);
* ``error_class``: the class name of the error, when there is one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._request import Request

#: The names of the fields, in the order a JSON line shows them.
FIELDS = ("event", "custom_id", "request_index", "attempt", "key_id", "error_class")


def log_fields(
    event: str,
    request: Request | None = None,
    key_id: str | None = None,
    error: BaseException | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra`` of a log record about ``event`` (fields that do not apply are left out)."""
    fields: dict[str, Any] = {"event": event}
    if request is not None:
        custom_id = request.metadata.get("custom_id")
        if isinstance(custom_id, str | int):
            fields["custom_id"] = custom_id
        fields["request_index"] = request.index
        fields["attempt"] = request.attempt
        key_id = key_id or request.key
    if key_id is not None:
        fields["key_id"] = key_id
    if error is not None:
        fields["error_class"] = type(error).__name__
    fields.update(more)
    return fields
