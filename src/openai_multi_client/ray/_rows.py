"""The stage's output rows: what a result (or a row that could not be sent) adds to its input
row, as Arrow columns of fixed types.

Each output row is its input row plus:

* ``response``: the response body as a JSON string (``null`` when there was none). Bodies differ
  by endpoint (a chat completion, an embedding's list of floats, an error body), so no single
  Arrow struct can hold them all across batches; a string always can.
* ``error``: ``"ClassName: message"`` of the classified error, or ``null`` on success.
* ``status_code``: the HTTP status of the last attempt (``null`` when none was received).
* ``usage``: a struct of the token counts (``prompt_tokens``, ``completion_tokens``,
  ``total_tokens``, and the Responses API's ``input_tokens``, ``output_tokens``; ``null``
  where the answer has none).
* ``latency``: seconds of the last attempt (``null`` when nothing was sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .. import ConfigurationError, Result, _json

USAGE_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
)

USAGE_TYPE = pa.struct([(name, pa.int64()) for name in USAGE_FIELDS])

#: The columns the stage adds, with their Arrow types.
RESULT_SCHEMA = pa.schema(
    [
        ("response", pa.string()),
        ("error", pa.string()),
        ("status_code", pa.int64()),
        ("usage", USAGE_TYPE),
        ("latency", pa.float64()),
    ]
)
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_SCHEMA.names)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What becomes of one input row (``position``: its place in the batch)."""

    position: int
    response: str | None
    error: str | None
    status_code: int | None
    usage: dict[str, int | None] | None
    latency: float | None


def describe(error: BaseException) -> str:
    """``"ClassName: message"``, as the ``error`` column holds it."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def from_result(position: int, result: Result) -> Outcome:
    response = None
    if result.response is not None:
        response = _json.dumps_record(result.response).decode("utf-8")
    return Outcome(
        position=position,
        response=response,
        error=describe(result.error) if result.failed and result.error is not None else None,
        status_code=result.status_code,
        usage=_usage(result.usage),
        latency=result.latency,
    )


def from_error(position: int, error: BaseException) -> Outcome:
    """A row that was never sent (its body could not be made, or was refused)."""
    return Outcome(position, None, describe(error), None, None, None)


def _usage(usage: Mapping[str, Any] | None) -> dict[str, int | None] | None:
    if usage is None:
        return None
    counts: dict[str, int | None] = {}
    for name in USAGE_FIELDS:
        value = usage.get(name)
        counts[name] = value if isinstance(value, int) and not isinstance(value, bool) else None
    return counts


def as_table(batch: Any) -> pa.Table:
    """The batch as an Arrow table, whatever format Ray gave it in (``batch_format="pyarrow"``
    is the cheapest; pandas and dicts of arrays are converted)."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, Mapping):
        return pa.table({name: pa.array(list(values)) for name, values in batch.items()})
    from_pandas = getattr(pa.Table, "from_pandas", None)
    if from_pandas is not None and type(batch).__name__ == "DataFrame":
        table: pa.Table = from_pandas(batch, preserve_index=False)
        return table
    raise ConfigurationError(
        f"the stage takes batches as pyarrow tables (map_batches(..., batch_format='pyarrow')), "
        f"got {type(batch).__name__}"
    )


def check_columns(table: pa.Table) -> None:
    """Refuse input whose columns the stage would overwrite."""
    clash = [name for name in RESULT_COLUMNS if name in table.column_names]
    if clash:
        raise ConfigurationError(
            f"the input rows already have the column(s) {', '.join(map(repr, clash))}, which the "
            "stage adds: rename or drop them before the stage (Dataset.rename_columns)"
        )


def output_table(batch: pa.Table, outcomes: Sequence[Outcome]) -> pa.Table:
    """The input rows of ``outcomes`` (in the order given) with the result columns added."""
    table = batch.take(pa.array([outcome.position for outcome in outcomes], type=pa.int64()))
    columns = {
        "response": [outcome.response for outcome in outcomes],
        "error": [outcome.error for outcome in outcomes],
        "status_code": [outcome.status_code for outcome in outcomes],
        "usage": [outcome.usage for outcome in outcomes],
        "latency": [outcome.latency for outcome in outcomes],
    }
    for field in RESULT_SCHEMA:
        table = table.append_column(field, pa.array(columns[field.name], type=field.type))
    return table
