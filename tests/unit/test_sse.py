"""The server-sent events decoder: any split of the bytes gives the same events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openai_multi_client._sse import ServerSentEvent, SSEDecoder


def decode(*pieces: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.close()


BODY = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b"event: response.created\ndata: first\ndata: second\n\n"
    b"data:no-space\r\n\r\n"
    b"id: 7\nretry: 100\ndata: \xc3\xa9t\xc3\xa9\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent(None, '{"a": 1}'),
    ServerSentEvent("response.created", "first\nsecond"),
    ServerSentEvent(None, "no-space"),
    ServerSentEvent(None, "été"),
    ServerSentEvent(None, "[DONE]"),
]


def test_events_comments_fields_and_line_endings() -> None:
    assert decode(BODY) == EXPECTED


def test_byte_by_byte_gives_the_same_events() -> None:
    assert decode(*(BODY[i : i + 1] for i in range(len(BODY)))) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(BODY)]
    assert decode(*(BODY[a:b] for a, b in itertools.pairwise(bounds))) == EXPECTED


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_crlf_split_between_reads_is_one_line_end(ending: bytes) -> None:
    # "\r" then "\n" in the next read must not count as two line ends (a blank line).
    first = b"data: a" + ending[:1]
    rest = ending[1:] + b"data: b" + ending + ending
    assert decode(first, rest) == [ServerSentEvent(None, "a\nb")]


def test_comment_only_and_empty_data() -> None:
    assert decode(b": ping\n\n: ping\n\n") == []
    assert decode(b"data\n\n") == [ServerSentEvent(None, "")]
    assert decode(b"event: x\n\n") == []  # no data: no event


def test_end_of_body_keeps_a_complete_unterminated_event_and_drops_a_cut_line() -> None:
    assert decode(b"data: [DONE]\n") == [ServerSentEvent(None, "[DONE]")]
    assert decode(b'data: {"a": 1}\n\ndata: {"b"') == [ServerSentEvent(None, '{"a": 1}')]
    assert decode(b"data: x\r") == [ServerSentEvent(None, "x")]
