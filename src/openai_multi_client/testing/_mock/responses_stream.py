"""The Responses API's streamed events for a finished answer, in the order OpenAI sends them.

``response.created`` and ``response.in_progress`` (the response without output, usage or
``completed_at``); for each output item: ``response.output_item.added``, then for a message
``response.content_part.added``, ``response.output_text.delta`` (small pieces),
``response.output_text.done`` and ``response.content_part.done``, for a function call
``response.function_call_arguments.delta`` and ``.done``; then ``response.output_item.done``;
finally ``response.completed`` (or ``response.incomplete``) with the whole response. Every event
carries ``type`` and an increasing ``sequence_number``; there is no ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

from .sse import sse, text_pieces

_Event = tuple[str, dict[str, Any]]


def response_events(answer: dict[str, Any]) -> list[bytes]:
    """The server-sent events that stream ``answer`` (a Responses API ``response`` object)."""
    started = {
        **answer,
        "status": "in_progress",
        "completed_at": None,
        "incomplete_details": None,
        "output": [],
        "usage": None,
    }
    events: list[_Event] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
    ]
    for index, item in enumerate(answer["output"]):
        events += _item_events(index, item)
    final = "response.completed" if answer["status"] == "completed" else "response.incomplete"
    events.append((final, {"response": answer}))
    return [
        sse({"type": kind, "sequence_number": number, **fields}, kind)
        for number, (kind, fields) in enumerate(events)
    ]


def _item_events(index: int, item: dict[str, Any]) -> list[_Event]:
    if item["type"] == "function_call":
        opened = {**item, "arguments": "", "status": "in_progress"}
        middle = _arguments_events(index, item)
    else:
        opened = {**item, "content": [], "status": "in_progress"}
        middle = []
        for part_index, part in enumerate(item["content"]):
            middle += _text_events(index, item["id"], part_index, part)
    return [
        ("response.output_item.added", {"output_index": index, "item": opened}),
        *middle,
        ("response.output_item.done", {"output_index": index, "item": item}),
    ]


def _text_events(index: int, item_id: str, part_index: int, part: dict[str, Any]) -> list[_Event]:
    where = {"item_id": item_id, "output_index": index, "content_index": part_index}
    text = part["text"]
    empty = {**part, "text": ""}
    events: list[_Event] = [("response.content_part.added", {**where, "part": empty})]
    for piece in text_pieces(text):
        events.append(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}))
    events += [
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": part}),
    ]
    return events


def _arguments_events(index: int, item: dict[str, Any]) -> list[_Event]:
    where = {"item_id": item["id"], "output_index": index}
    arguments = item["arguments"]
    events: list[_Event] = [
        ("response.function_call_arguments.delta", {**where, "delta": piece})
        for piece in text_pieces(arguments)
    ]
    done = {**where, "name": item["name"], "arguments": arguments}
    events.append(("response.function_call_arguments.done", done))
    return events
